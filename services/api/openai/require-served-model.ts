import { status } from '@grpc/grpc-js';
import { z } from 'zod';
import { ServiceError } from '../../../shared/errors';

/**
 * A request must name the model this server serves (GET /v1/models lists it): any other is
 * NOT_FOUND (404, `model_not_found`), as OpenAI answers. The cause names the field, as a
 * schema's rejection would.
 */
export function requireServedModel(model: string, servedModel: string): void {
  if (model === servedModel) return;
  const message = `the model \`${model}\` is not served here; GET /v1/models lists \`${servedModel}\``;
  throw new ServiceError(status.NOT_FOUND, `model: ${message}`, new z.ZodError([{ code: 'custom', path: ['model'], message, input: model }]));
}
