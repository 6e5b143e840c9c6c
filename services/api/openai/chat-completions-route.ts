import type { RequestHandler } from 'express';
import { parseInput } from '../parse-input';
import { OPENAI_DEFAULT_TEMPERATURE, type ChatCompletionBody, type ChatCompletionChunkBody, type ChatCompletionRequestBody, type OpenAiSchemas } from '../schemas/openai-schemas';
import { choiceSpecs } from './choice-specs';
import { openAiGenerationRoute, type ChoicesFormat, type OpenAiRouteDeps } from './openai-generation';
import { openAiLogprobs } from './openai-logprobs';
import { requireServedModel } from './require-served-model';

/**
 * `POST /v1/chat/completions`: the messages become the prompt through the tokenizer's chat
 * template (the checkpoint's own, or ChatML), then n choices continue it. Without max_tokens a
 * reply is as long as the project's default generation (OpenAI's "until the context is full"
 * would make every reply of a model that never ends its turn as long as the context).
 */
export function chatCompletionsRoute(deps: OpenAiRouteDeps, schemas: OpenAiSchemas): RequestHandler {
  return openAiGenerationRoute(deps, async (input, context, deadlineUnixMs) => {
    const body = parseInput(schemas.ChatCompletionRequest, input);
    requireServedModel(body.model, deps.modelName);
    const prompt = await deps.generation.renderChat(body.messages.map((m) => ({ role: m.role, content: contentText(m.content) })), context.requestId, deadlineUnixMs);
    const specs = choiceSpecs(
      [prompt.tokenIds],
      body.n ?? 1,
      {
        // Neither given: the coordinator's default, lowered to what the context leaves (OpenAI's chat has no fixed default).
        maxNewTokens: body.max_completion_tokens ?? body.max_tokens ?? undefined,
        temperature: body.temperature ?? OPENAI_DEFAULT_TEMPERATURE,
        topK: body.top_k ?? undefined,
        topP: body.top_p ?? undefined,
        repetitionPenalty: body.repetition_penalty ?? undefined,
        stop: typeof body.stop === 'string' ? [body.stop] : (body.stop ?? []),
        topLogprobs: body.logprobs === true ? (body.top_logprobs ?? 0) : 0,
        ignoreEos: body.ignore_eos ?? false,
        priority: body.priority ?? 'interactive',
      },
      body.seed ?? undefined,
      context.requestId,
    );
    return {
      request: {
        specs,
        promptTokens: prompt.tokenIds.length,
        stream: body.stream === true,
        includeUsage: body.stream_options?.include_usage === true,
        fields: { prompt: 'messages', maxNewTokens: body.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens' },
      },
      format: chatFormat(`chatcmpl-${context.requestId}`, Math.floor(Date.now() / 1000), body.model, body.logprobs === true),
    };
  });
}

function contentText(content: ChatCompletionRequestBody['messages'][number]['content']): string {
  return typeof content === 'string' ? content : content.map((part) => part.text).join('');
}

function chatFormat(id: string, created: number, model: string, logprobs: boolean): ChoicesFormat {
  const head = { id, object: 'chat.completion.chunk' as const, created, model };
  const started = new Set<number>();
  return {
    tokenChunk(choice, token): ChatCompletionChunkBody {
      // The first delta of a choice says whose turn it is, as OpenAI's do.
      const delta = started.has(choice) ? { content: token.text } : { role: 'assistant' as const, content: token.text };
      started.add(choice);
      return { ...head, choices: [{ index: choice, delta, logprobs: logprobs ? openAiLogprobs.chat([token]) : null, finish_reason: null }] };
    },
    finishChunk(choice, finishReason): ChatCompletionChunkBody {
      return { ...head, choices: [{ index: choice, delta: {}, logprobs: null, finish_reason: finishReason }] };
    },
    usageChunk(usage): ChatCompletionChunkBody {
      return { ...head, choices: [], usage };
    },
    body(choices, usage): ChatCompletionBody {
      return {
        ...head,
        object: 'chat.completion',
        choices: choices.map((c, index) => ({
          index,
          message: { role: 'assistant', content: c.summary.text },
          logprobs: logprobs ? openAiLogprobs.chat(c.tokens) : null,
          finish_reason: c.finishReason,
        })),
        usage,
      };
    },
  };
}
