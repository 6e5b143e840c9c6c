import type { RequestHandler } from 'express';
import { parseInput } from '../parse-input';
import type { OpenAiSchemas } from '../schemas/openai-schemas';
import { OPENAI_COMPLETION_DEFAULT_MAX_TOKENS, OPENAI_DEFAULT_TEMPERATURE, type CompletionBody, type CompletionChunkBody } from '../schemas/openai-schemas';
import { choiceSpecs } from './choice-specs';
import { openAiGenerationRoute, type ChoicesFormat, type OpenAiRouteDeps } from './openai-generation';
import { openAiLogprobs } from './openai-logprobs';
import { requireServedModel } from './require-served-model';

/** `POST /v1/completions`: OpenAI's legacy completions, a prompt (or several) continued n times each. */
export function completionsRoute(deps: OpenAiRouteDeps, schemas: OpenAiSchemas): RequestHandler {
  return openAiGenerationRoute(deps, async (input, context, deadlineUnixMs) => {
    const body = parseInput(schemas.CompletionRequest, input);
    requireServedModel(body.model, deps.modelName);
    const texts = typeof body.prompt === 'string' ? [body.prompt] : body.prompt;
    const prompts = await Promise.all(texts.map((text) => deps.generation.encode(text, context.requestId, deadlineUnixMs)));
    const n = body.n ?? 1;
    const specs = choiceSpecs(
      prompts.map((p) => p.tokenIds),
      n,
      {
        maxNewTokens: body.max_tokens ?? Math.min(OPENAI_COMPLETION_DEFAULT_MAX_TOKENS, deps.limits.maxNewTokens),
        temperature: body.temperature ?? OPENAI_DEFAULT_TEMPERATURE,
        topK: body.top_k ?? undefined,
        topP: body.top_p ?? undefined,
        repetitionPenalty: body.repetition_penalty ?? undefined,
        stop: typeof body.stop === 'string' ? [body.stop] : (body.stop ?? []),
        topLogprobs: body.logprobs ?? 0,
        ignoreEos: body.ignore_eos ?? false,
        priority: body.priority ?? 'interactive',
      },
      body.seed ?? undefined,
      context.requestId,
    );
    return {
      request: {
        specs,
        promptTokens: prompts.reduce((sum, p) => sum + p.tokenIds.length, 0),
        stream: body.stream === true,
        includeUsage: body.stream_options?.include_usage === true,
        fields: { prompt: 'prompt', maxNewTokens: 'max_tokens' },
      },
      format: completionFormat(`cmpl-${context.requestId}`, Math.floor(Date.now() / 1000), body.model, body.logprobs ?? undefined),
    };
  });
}

/** `logprobs` undefined: none reported; a number (0 included): each token's, with that many alternatives. */
function completionFormat(id: string, created: number, model: string, logprobs: number | undefined): ChoicesFormat {
  const head = { id, object: 'text_completion' as const, created, model };
  const streamedLength = new Map<number, number>();
  return {
    tokenChunk(choice, token): CompletionChunkBody {
      const offset = streamedLength.get(choice) ?? 0;
      streamedLength.set(choice, offset + token.text.length);
      return { ...head, choices: [{ index: choice, text: token.text, logprobs: logprobs === undefined ? null : openAiLogprobs.completion([token], offset), finish_reason: null }] };
    },
    finishChunk(choice, finishReason): CompletionChunkBody {
      return { ...head, choices: [{ index: choice, text: '', logprobs: null, finish_reason: finishReason }] };
    },
    usageChunk(usage): CompletionChunkBody {
      return { ...head, choices: [], usage };
    },
    body(choices, usage): CompletionBody {
      return {
        ...head,
        choices: choices.map((c, index) => ({
          index,
          text: c.summary.text,
          logprobs: logprobs === undefined ? null : openAiLogprobs.completion(c.tokens, 0),
          finish_reason: c.finishReason,
        })),
        usage,
      };
    },
  };
}
