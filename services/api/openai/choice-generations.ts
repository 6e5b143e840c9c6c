import { status, type ClientReadableStream } from '@grpc/grpc-js';
import type { GenerateEvent__Output } from '../../../protos/generated/pipeserve/v1/GenerateEvent';
import type { GenerationSummary__Output } from '../../../protos/generated/pipeserve/v1/GenerationSummary';
import type { TokenEvent__Output } from '../../../protos/generated/pipeserve/v1/TokenEvent';
import { ServiceError } from '../../../shared/errors';
import { GenerationClient, type RequestFieldNames } from '../generation-client';
import type { GenerationSettings } from '../generation-settings';

/** One choice of a request: one sequence in the pipeline. */
export interface ChoiceSpec {
  readonly settings: GenerationSettings;
  readonly promptTokenIds: readonly number[];
  /** The coordinator's request id for this choice (the HTTP request's id, suffixed when there are several). */
  readonly requestId: string;
}

export interface TokenAlternative {
  readonly tokenId: number;
  readonly text: string;
  readonly logprob: number;
}

export interface ChoiceToken {
  /** 0 for the first generated token of the choice. */
  readonly index: number;
  readonly tokenId: number;
  /** The text this token completes (empty while a character is incomplete): the pieces concatenate to the choice's text. */
  readonly text: string;
  readonly logprob: number;
  /** The most likely tokens, best first, each with its own text. */
  readonly alternatives: readonly TokenAlternative[];
}

export interface ChoiceListener {
  token(choice: number, token: ChoiceToken): void;
  finished(choice: number, summary: GenerationSummary__Output): void;
}

/**
 * The coordinator Generate calls of one request's choices, started together. Nothing reaches
 * the listener until every call has answered its first event, so that a request the coordinator
 * refuses at once (full queue, prompt too long) fails as a whole, before any answer is under
 * way; then events arrive in order. The first failure cancels the other calls.
 */
export class ChoiceGenerations {
  /** Resolves once every choice is admitted (has answered an event); rejects with the first failure before that. */
  readonly admitted: Promise<void>;
  /** Resolves when every choice has finished and been delivered; rejects with the first failure. */
  readonly finished: Promise<void>;

  private readonly calls: ClientReadableStream<GenerateEvent__Output>[] = [];
  private readonly alternativeTexts = new Map<number, Promise<string>>();
  private settled = false;
  private cancelledHere = false;
  private resolveAdmitted!: () => void;
  private resolveFinished!: () => void;
  private rejectBoth!: (error: ServiceError) => void;

  private constructor(
    private readonly generation: GenerationClient,
    private readonly deadlineUnixMs: number,
    private readonly fields: RequestFieldNames,
    private readonly listener: ChoiceListener,
  ) {
    let rejectAdmitted!: (error: ServiceError) => void;
    let rejectFinished!: (error: ServiceError) => void;
    this.admitted = new Promise((resolve, reject) => {
      this.resolveAdmitted = resolve;
      rejectAdmitted = reject;
    });
    this.finished = new Promise((resolve, reject) => {
      this.resolveFinished = resolve;
      rejectFinished = reject;
    });
    // Callers may await only one of the two: the other must not surface as an unhandled rejection.
    this.admitted.catch(() => undefined);
    this.finished.catch(() => undefined);
    this.rejectBoth = (error) => {
      rejectAdmitted(error);
      rejectFinished(error);
    };
  }

  static start(generation: GenerationClient, specs: readonly ChoiceSpec[], deadlineUnixMs: number, fields: RequestFieldNames, listener: ChoiceListener): ChoiceGenerations {
    const run = new ChoiceGenerations(generation, deadlineUnixMs, fields, listener);
    run.startCalls(specs);
    return run;
  }

  /** The client went away: cancelling the calls is what frees the sequences' KV caches in every stage. */
  cancel(): void {
    if (this.settled) return;
    this.settled = true;
    this.cancelledHere = true;
    for (const call of this.calls) call.cancel();
    this.rejectBoth(new ServiceError(status.CANCELLED, 'the client went away'));
  }

  private startCalls(specs: readonly ChoiceSpec[]): void {
    let awaitingFirstEvent = specs.length;
    let unfinished = specs.length;
    let admittedGate!: () => void;
    const gate = new Promise<void>((resolve) => {
      admittedGate = resolve;
    });
    // One chain for every delivery keeps events in arrival order, including the ones that wait
    // for the texts of their alternatives.
    let delivery: Promise<void> = gate;

    specs.forEach((spec, choice) => {
      const call = this.generation.generate(spec.settings, spec.promptTokenIds, spec.requestId, this.deadlineUnixMs);
      this.calls.push(call);
      let answered = false;
      let summarized = false;
      call.on('data', (event: GenerateEvent__Output) => {
        if (this.settled) return;
        if (!answered) {
          answered = true;
          if (--awaitingFirstEvent === 0) {
            this.resolveAdmitted();
            admittedGate();
          }
        }
        if (event.summary) summarized = true;
        delivery = delivery
          .then(async () => {
            if (this.settled) return;
            if (event.token) {
              const token = await this.choiceToken(event.token, spec.requestId);
              if (!this.settled) this.listener.token(choice, token);
            } else if (event.summary) {
              this.listener.finished(choice, event.summary);
              if (--unfinished === 0) {
                this.settled = true;
                this.resolveFinished();
              }
            }
          })
          .catch((error: unknown) => this.fail(ServiceError.from(error)));
      });
      call.on('error', (error: unknown) => this.fail(GenerationClient.coordinatorError(error, this.cancelledHere, this.fields)));
      call.on('end', () => {
        if (!summarized) this.fail(new ServiceError(status.INTERNAL, 'coordinator: the stream ended without a summary'));
      });
    });
  }

  private fail(error: ServiceError): void {
    if (this.settled) return;
    this.settled = true;
    this.cancelledHere = true;
    for (const call of this.calls) call.cancel();
    this.rejectBoth(error);
  }

  private async choiceToken(event: TokenEvent__Output, requestId: string): Promise<ChoiceToken> {
    const alternatives = await Promise.all(
      event.top_logprobs.map(async (alternative) => ({ tokenId: alternative.token_id, logprob: alternative.logprob, text: await this.textOf(alternative.token_id, requestId) })),
    );
    return { index: event.index, tokenId: event.token_id, text: event.text, logprob: event.logprob, alternatives };
  }

  /** One Decode per distinct alternative of the request, shared by every token that lists it. */
  private textOf(tokenId: number, requestId: string): Promise<string> {
    let text = this.alternativeTexts.get(tokenId);
    if (text === undefined) {
      text = this.generation.decodeToken(tokenId, requestId, this.deadlineUnixMs);
      this.alternativeTexts.set(tokenId, text);
    }
    return text;
  }
}
