import { z } from './zod-openapi';

/** The error body of every non-OpenAI route, the health and readiness answers. */
export function serviceSchemas() {
  const ErrorBody = z
    .object({
      error: z.object({
        code: z.string().openapi({ description: 'gRPC status name, e.g. INVALID_ARGUMENT' }),
        message: z.string().openapi({ description: 'Starts with the field at fault, when there is one' }),
        request_id: z.string(),
      }),
    })
    .openapi('Error', { example: { error: { code: 'INVALID_ARGUMENT', message: 'max_new_tokens: must be an integer between 1 and 512, got 0', request_id: '5b0f3f0e-6f7c-4a43-9a43-3c1d2b1f8e2a' } } });

  const Health = z.object({ status: z.literal('ok') }).openapi('Health', { example: { status: 'ok' } });

  const NodeReadiness = z.object({ node_id: z.string(), stage: z.int(), address: z.string(), serving: z.boolean() });
  const Ready = z
    .object({
      ready: z.literal(true),
      model_name: z.string(),
      stages: z.int(),
      nodes: z.array(NodeReadiness),
      degraded: z.array(z.string()).openapi({ description: 'Replicas that are down while their stage still has a serving one: one line each, with address and reason' }),
    })
    .openapi('Ready', {
      example: {
        ready: true,
        model_name: 'default',
        stages: 3,
        nodes: [
          { node_id: 'node1', stage: 0, address: 'localhost:50051', serving: true },
          { node_id: 'node2', stage: 1, address: 'localhost:50052', serving: true },
          { node_id: 'node3', stage: 2, address: 'localhost:50053', serving: true },
        ],
        degraded: [],
      },
    });
  const NotReady = z
    .object({
      ready: z.literal(false),
      missing: z.array(z.string()).openapi({ description: 'One line per service or node that is down, with its address and the reason' }),
    })
    .openapi('NotReady', { example: { ready: false, missing: ['node2 (stage 1) at localhost:50052: connection refused'] } });

  return { ErrorBody, Health, Ready, NotReady };
}
