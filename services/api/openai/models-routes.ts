import type { RequestHandler } from 'express';
import { ServiceError } from '../../../shared/errors';
import { contextOf } from '../request-context';
import type { OpenAiSchemas } from '../schemas/openai-schemas';
import { sendError } from '../send-error';
import type { z } from '../schemas/zod-openapi';
import { requireServedModel } from './require-served-model';

/** `GET /v1/models` and `GET /v1/models/{model}`: the one model this server serves. */
export function modelsRoutes(modelName: string, createdUnixS: number): { readonly list: RequestHandler; readonly retrieve: RequestHandler } {
  const model: z.output<OpenAiSchemas['Model']> = { id: modelName, object: 'model', created: createdUnixS, owned_by: 'pipeserve' };
  return {
    list: (_req, res) => {
      const list: z.output<OpenAiSchemas['ModelList']> = { object: 'list', data: [model] };
      res.json(list);
    },
    retrieve: (req, res) => {
      try {
        requireServedModel(String(req.params.model), modelName);
        res.json(model);
      } catch (error) {
        sendError(res, ServiceError.from(error), contextOf(req));
      }
    },
  };
}
