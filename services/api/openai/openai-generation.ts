import type { RequestHandler, Response } from 'express';
import type { Limits } from '../../../shared/config';
import type { GenerationSummary__Output } from '../../../protos/generated/pipeserve/v1/GenerationSummary';
import { httpStatusOf, ServiceError } from '../../../shared/errors';
import type { ApiMetrics } from '../api-metrics';
import type { GenerationClient, RequestFieldNames } from '../generation-client';
import { contextOf, type RequestContext } from '../request-context';
import type { UsageBody } from '../schemas/openai-schemas';
import { openAiErrorBody, sendError } from '../send-error';
import { SseStream } from '../sse-stream';
import { ChoiceGenerations, type ChoiceSpec, type ChoiceToken } from './choice-generations';

export type OpenAiFinishReason = 'stop' | 'length';

export interface FinishedChoice {
  readonly tokens: readonly ChoiceToken[];
  readonly summary: GenerationSummary__Output;
  readonly finishReason: OpenAiFinishReason;
}

/** How one endpoint (completions, chat) shapes its chunks and its answer. */
export interface ChoicesFormat {
  tokenChunk(choice: number, token: ChoiceToken): object;
  finishChunk(choice: number, finishReason: OpenAiFinishReason): object;
  usageChunk(usage: UsageBody): object;
  body(choices: readonly FinishedChoice[], usage: UsageBody): object;
}

export interface ChoicesRequest {
  readonly specs: readonly ChoiceSpec[];
  /** Tokens of the prompts, each counted once however many choices it has (OpenAI's usage). */
  readonly promptTokens: number;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  /** The body's names for the fields that a refusal of the coordinator names. */
  readonly fields: RequestFieldNames;
}

export interface OpenAiRouteDeps {
  readonly generation: GenerationClient;
  readonly limits: Limits;
  readonly metrics: ApiMetrics;
  /** The one model this server serves: requests must name it. */
  readonly modelName: string;
}

/** What a route makes of its parsed body: the choices to run and how to shape their answer. */
export type PrepareChoices = (body: unknown, context: RequestContext, deadlineUnixMs: number) => Promise<{ readonly request: ChoicesRequest; readonly format: ChoicesFormat }>;

/**
 * An OpenAI generation endpoint: parse and prepare (encode the prompts, or render the chat),
 * then answer the choices. Any failure before the answer is under way is an OpenAI error body
 * with its HTTP status.
 */
export function openAiGenerationRoute(deps: OpenAiRouteDeps, prepare: PrepareChoices): RequestHandler {
  return async (req, res) => {
    const context = contextOf(req);
    const deadlineUnixMs = context.receivedAtUnixMs + deps.limits.requestTimeoutMs;
    const clientGone = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) clientGone.abort();
    });
    let prepared: Awaited<ReturnType<PrepareChoices>>;
    try {
      prepared = await prepare(req.body, context, deadlineUnixMs);
    } catch (error) {
      sendError(res, ServiceError.from(error), context);
      return;
    }
    // The client may have left while its prompts were being encoded.
    if (clientGone.signal.aborted) return;
    await answerChoices(res, context, { ...deps, deadlineUnixMs, clientGone: clientGone.signal }, prepared.request, prepared.format);
  };
}

/**
 * Runs a request's choices and answers them: one JSON body, or (stream) `data:` chunks as the
 * tokens arrive, a finishing chunk per choice, the usage chunk when asked for, then
 * `data: [DONE]`. The 200 waits for every choice to be admitted, so a refusal keeps its HTTP
 * status; a failure after that is a `data:` chunk with OpenAI's error body, then `[DONE]`.
 * A client that goes away cancels every choice.
 */
async function answerChoices(
  res: Response,
  context: RequestContext,
  deps: { readonly generation: GenerationClient; readonly metrics: ApiMetrics; readonly deadlineUnixMs: number; readonly clientGone: AbortSignal },
  request: ChoicesRequest,
  format: ChoicesFormat,
): Promise<void> {
  const tokens: ChoiceToken[][] = request.specs.map(() => []);
  const finished: FinishedChoice[] = [];
  let stream: SseStream | undefined;
  const run = ChoiceGenerations.start(deps.generation, request.specs, deps.deadlineUnixMs, request.fields, {
    token(choice, token) {
      deps.metrics.countTokens('generated', 1);
      if (stream !== undefined) stream.sendData(format.tokenChunk(choice, token));
      else tokens[choice].push(token);
    },
    finished(choice, summary) {
      deps.metrics.countTokens('prompt', summary.prompt_tokens);
      const finishReason: OpenAiFinishReason = summary.finish_reason === 'length' ? 'length' : 'stop';
      finished[choice] = { tokens: tokens[choice], summary, finishReason };
      stream?.sendData(format.finishChunk(choice, finishReason));
    },
  });
  deps.clientGone.addEventListener('abort', () => run.cancel(), { once: true });

  if (request.stream) {
    try {
      await run.admitted;
    } catch (error) {
      sendError(res, ServiceError.from(error), context);
      return;
    }
    stream = SseStream.open(res);
  }
  try {
    await run.finished;
  } catch (error) {
    const serviceError = ServiceError.from(error);
    // Logs it; answers it only while no stream is under way.
    sendError(res, serviceError, context);
    if (stream !== undefined) {
      stream.sendData(openAiErrorBody(serviceError, httpStatusOf(serviceError.code)));
      stream.sendDone();
      stream.end();
    }
    return;
  }
  const completionTokens = finished.reduce((sum, choice) => sum + choice.summary.generated_tokens, 0);
  const usage = { prompt_tokens: request.promptTokens, completion_tokens: completionTokens, total_tokens: request.promptTokens + completionTokens };
  if (stream === undefined) {
    res.json(format.body(finished, usage));
    return;
  }
  if (request.includeUsage) stream.sendData(format.usageChunk(usage));
  stream.sendDone();
  stream.end();
}
