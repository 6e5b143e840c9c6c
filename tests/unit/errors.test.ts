import { status } from '@grpc/grpc-js';
import { httpStatusOf, ServiceError } from '../../shared/errors';

describe('ServiceError', () => {
  it('keeps a gRPC status error as it is, without grpc-js\'s empty resolution note', () => {
    const grpcError = Object.assign(new Error('14 UNAVAILABLE: No connection established'), {
      code: status.UNAVAILABLE,
      details: 'No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: ',
    });
    const error = ServiceError.from(grpcError);
    expect(error.code).toBe(status.UNAVAILABLE);
    expect(error.message).toBe('No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1');
  });

  it('maps Node network errors to UNAVAILABLE and anything else to INTERNAL', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    expect(ServiceError.from(refused).code).toBe(status.UNAVAILABLE);
    expect(ServiceError.from(new TypeError('x is undefined')).code).toBe(status.INTERNAL);
    expect(ServiceError.from('a string').code).toBe(status.UNKNOWN);
  });

  it('maps statuses to HTTP in one place', () => {
    expect(httpStatusOf(status.INVALID_ARGUMENT)).toBe(400);
    expect(httpStatusOf(status.RESOURCE_EXHAUSTED)).toBe(429);
    expect(httpStatusOf(status.UNAVAILABLE)).toBe(503);
    expect(httpStatusOf(status.DEADLINE_EXCEEDED)).toBe(503);
    expect(httpStatusOf(status.INTERNAL)).toBe(500);
  });
});
