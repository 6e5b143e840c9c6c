import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import type { CoordinatorMessage__Output } from '../../protos/generated/pipeserve/v1/CoordinatorMessage';
import type { DescribeRequest__Output } from '../../protos/generated/pipeserve/v1/DescribeRequest';
import type { DescribeResponse } from '../../protos/generated/pipeserve/v1/DescribeResponse';
import type { ForwardMessage__Output } from '../../protos/generated/pipeserve/v1/ForwardMessage';
import type { ForwardReply, ForwardReply__Output } from '../../protos/generated/pipeserve/v1/ForwardReply';
import type { ModelNodeHandlers } from '../../protos/generated/pipeserve/v1/ModelNode';
import type { NodeEvent } from '../../protos/generated/pipeserve/v1/NodeEvent';
import type { OpenSequence__Output } from '../../protos/generated/pipeserve/v1/OpenSequence';
import type { ReleaseSequences__Output } from '../../protos/generated/pipeserve/v1/ReleaseSequences';
import type { RewindSequence__Output } from '../../protos/generated/pipeserve/v1/RewindSequence';
import type { SampledToken } from '../../protos/generated/pipeserve/v1/SampledToken';
import type { StageTiming } from '../../protos/generated/pipeserve/v1/StageTiming';
import type { Step__Output } from '../../protos/generated/pipeserve/v1/Step';
import { ServiceError } from '../../shared/errors';
import { safeRequestId } from '../../shared/grpc/channel';
import type { Logger } from '../../shared/logger';
import type { NodeDirectory } from '../../shared/node-directory';
import { idProblem, PROTOCOL_LIMITS } from '../../shared/protocol/limits';
import { float32Tensor } from '../../shared/tensor';
import { encodeTensor } from '../../shared/tensor-codec';
import { CoordinatorSession } from './coordinator-session';
import { ForwardLinks } from './forward-links';
import { HiddenStateCache } from './hidden-state-cache';
import { parseIncomingStep, type IncomingStep } from './incoming-step';
import { NodeMetrics } from './node-metrics';
import { OpenSequences, type OpenSequence } from './open-sequences';
import { SequenceSamplers } from './sequence-samplers';
import type { StageEngine } from './stage-engine';
import type { StepOutput } from './stage-runtime';

export interface ModelNodeOptions {
  /** This replica's id as the coordinator and the other nodes name it. */
  readonly nodeId: string;
  readonly kvBudgetBytes: number;
  /** Sequences untouched this long are dropped (their coordinator died without releasing them). */
  readonly kvIdleTtlMs: number;
  /** How long loading the stage took (published as pipeserve_stage_load_seconds). */
  readonly loadSeconds?: number;
}

/** Forwarded steps are remembered this long, so a reply from the next hop still finds their owner. */
const FORWARD_MEMORY_MS = 30_000;

/**
 * The model-node service: one stage replica (the protocol is described in protos/node.proto).
 * Coordinators open, step (first stage) and release sequences on their Connect sessions; hidden
 * states arrive from the previous stage on Forward streams. Steps run through the stage runtime
 * one at a time; then the last stage samples and sends the tokens straight to the sequence's
 * owner, and any other stage passes the hidden states on to the next hop fixed at open time. A
 * stage does not wait for a step's result before running the next one, so several micro-batches
 * move along the pipeline at once. Whatever fails is reported to the owner of the step's
 * sequences, never to whoever sent the message.
 */
export class ModelNodeService {
  private readonly sequences = new OpenSequences();
  /** Ids whose open is waiting for its KV reservation, with the session opening it; `released` once that session released the id meanwhile. */
  private readonly opening = new Map<string, { readonly session: CoordinatorSession; released: boolean }>();
  /** Ids released whose KV is freed behind the steps queued before: reopening one now would merge into the old entry. */
  private readonly releasing = new Set<string>();
  private readonly samplers = new SequenceSamplers();
  /** Every stage but the last: what it passed on, for a partial replay of the next stage. */
  private readonly hidden: HiddenStateCache | undefined;
  private readonly links: ForwardLinks;
  private readonly forwarded = new Map<number, { readonly owner: CoordinatorSession; readonly stepId: number; readonly at: number }>();
  private nextForwardId = 1;
  private readonly metrics: NodeMetrics;
  private readonly idleTimer: NodeJS.Timeout;

  constructor(
    private readonly runtime: StageEngine,
    private readonly options: ModelNodeOptions,
    private readonly directory: NodeDirectory,
    registry: Registry,
    private readonly logger: Logger,
  ) {
    this.metrics = new NodeMetrics(registry);
    this.hidden = runtime.stage.isLast ? undefined : new HiddenStateCache(runtime.shape.hiddenSize);
    this.links = new ForwardLinks(directory, { onReply: (peerId, reply) => this.onForwardReply(peerId, reply) }, logger);
    this.metrics.kvBudgetBytes.set(options.kvBudgetBytes);
    this.metrics.describeModel(runtime.manifest, runtime.stage);
    if (options.loadSeconds !== undefined) this.metrics.loadSeconds.set(options.loadSeconds);
    this.idleTimer = setInterval(() => void this.dropIdleSequences(), Math.max(250, Math.floor(options.kvIdleTtlMs / 4)));
    this.idleTimer.unref();
  }

  get stageIndex(): number {
    return this.runtime.stage.index;
  }

  /** Sequences open on this node (for tests and Describe). */
  get openSequences(): number {
    return this.sequences.size;
  }

  handlers(): ModelNodeHandlers {
    return {
      Connect: (call) => this.serveSession(call),
      Forward: (call) => this.serveForward(call),
      Describe: (_call: grpc.ServerUnaryCall<DescribeRequest__Output, DescribeResponse>, callback: grpc.sendUnaryData<DescribeResponse>) => {
        const { stage, manifest } = this.runtime;
        const kv = this.runtime.kvStats();
        callback(null, {
          node_id: this.options.nodeId,
          model_name: manifest.modelName,
          stage: stage.index,
          stages: manifest.stages.length,
          layer_start: stage.layerStart,
          layer_end: stage.layerEnd,
          kv_sequences: kv.sequences,
          kv_bytes: kv.bytes,
          kv_budget_bytes: this.options.kvBudgetBytes,
          kv_reserved_bytes: kv.reservedBytes,
          kv_bytes_per_token: kv.bytesPerToken,
          weights: stage.weights.format,
        });
      },
    };
  }

  close(): void {
    clearInterval(this.idleTimer);
    this.links.closeAll();
  }

  private serveSession(call: grpc.ServerDuplexStream<CoordinatorMessage__Output, NodeEvent>): void {
    const session = new CoordinatorSession(call);
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      session.close();
      const owned = this.sequences.ownedBySession(session);
      for (const id of owned) void this.release(id);
      if (owned.length > 0) this.logger.info('coordinator session ended; released its sequences', { session: session.id, coordinator: session.coordinatorId, sequences: owned.length });
    };
    call.on('data', (message: CoordinatorMessage__Output) => this.onCoordinatorMessage(session, message));
    call.on('end', () => {
      end();
      call.end();
    });
    call.on('error', end);
    call.on('cancelled', end);
  }

  private onCoordinatorMessage(session: CoordinatorSession, message: CoordinatorMessage__Output): void {
    switch (message.kind) {
      case 'hello': {
        const coordinatorId = message.hello?.coordinator_id ?? '';
        const problem = idProblem(coordinatorId);
        if (problem === undefined) session.coordinatorId = coordinatorId;
        else session.fail(ServiceError.invalidArgument('hello.coordinator_id', problem));
        return;
      }
      case 'open':
        if (message.open) void this.open(session, message.open);
        return;
      case 'step':
        if (message.step) this.acceptFromOwner(session, message.step);
        return;
      case 'release':
        if (message.release) void this.releaseFor(session, message.release);
        return;
      case 'rewind':
        if (message.rewind) void this.rewind(session, message.rewind);
        return;
      default:
        // Nothing to answer it on, and silence would leave the sender waiting: the session ends.
        this.logger.warn('coordinator message without a kind', { session: session.id });
        session.fail(ServiceError.invalidArgument('kind', 'a coordinator message is one of hello, open, step, release, rewind'));
    }
  }

  private async open(session: CoordinatorSession, open: OpenSequence__Output): Promise<void> {
    const { stage, shape } = this.runtime;
    let claimed = false;
    try {
      const problem = idProblem(open.sequence_id);
      if (problem !== undefined) throw ServiceError.invalidArgument('open.sequence_id', problem);
      if (this.sequences.has(open.sequence_id) || this.opening.has(open.sequence_id)) {
        throw new ServiceError(grpc.status.ALREADY_EXISTS, `open.sequence_id: ${open.sequence_id} is already open`);
      }
      if (this.releasing.has(open.sequence_id)) throw new ServiceError(grpc.status.ALREADY_EXISTS, `open.sequence_id: ${open.sequence_id} is still being released`);
      const opening = { session, released: false };
      this.opening.set(open.sequence_id, opening);
      claimed = true;
      if (open.token.length < PROTOCOL_LIMITS.minTokenBytes || open.token.length > PROTOCOL_LIMITS.maxTokenBytes) {
        throw ServiceError.invalidArgument('open.token', `must be ${PROTOCOL_LIMITS.minTokenBytes}-${PROTOCOL_LIMITS.maxTokenBytes} bytes`);
      }
      if (open.reserve_tokens < 1 || open.reserve_tokens > shape.contextLength) {
        throw ServiceError.invalidArgument('open.reserve_tokens', `must be 1-${shape.contextLength} (the model's context), got ${open.reserve_tokens}`);
      }
      const nextNodeId = await this.nextHop(open.next_node_id, 'open.next_node_id');
      const sampling = open.sampling ?? { temperature: 0, top_k: 0, top_p: 1, repetition_penalty: 1, seed: 0, top_logprobs: 0 };
      if (stage.isLast) this.samplers.open(open.sequence_id, sampling);
      try {
        await this.runtime.reserve(open.sequence_id, open.reserve_tokens);
      } catch (error) {
        this.samplers.delete(open.sequence_id);
        if (ServiceError.from(error).code === grpc.status.RESOURCE_EXHAUSTED) this.metrics.sessionsRefused.inc();
        throw error;
      }
      const sequence: OpenSequence = { sequenceId: open.sequence_id, requestId: safeRequestId(open.request_id), owner: session, token: Buffer.from(open.token), nextNodeId, sampling, rewinding: false };
      this.sequences.add(sequence);
      this.updateKvGauges();
      this.logger.info('sequence opened', { request_id: safeRequestId(open.request_id), sequence_id: open.sequence_id, reserve_tokens: open.reserve_tokens });
      if (!session.isOpen) {
        // The session ended while the reservation was made: nobody will ever release it.
        void this.release(open.sequence_id);
        return;
      }
      if (opening.released) {
        // Its owner released it while the reservation was made (the open had timed out there).
        void this.release(open.sequence_id);
        session.send({ opened: { sequence_id: open.sequence_id, code: grpc.status.ABORTED, message: `open.sequence_id: ${open.sequence_id} was released while it opened` } });
        return;
      }
      session.send({ opened: { sequence_id: open.sequence_id, code: grpc.status.OK, reserved_bytes: open.reserve_tokens * this.runtime.kvStats().reservedBytesPerToken } });
    } catch (error) {
      const serviceError = ServiceError.from(error);
      session.send({ opened: { sequence_id: open.sequence_id, code: serviceError.code, message: serviceError.message } });
    } finally {
      if (claimed) this.opening.delete(open.sequence_id);
    }
  }

  /** The next hop a coordinator names, checked: a configured replica of the next stage; none on the last stage. */
  /**
   * The next hop an open or rewind names, if it is a replica of the next stage in this node's
   * directory. A replica the coordinator discovered before this node did (a scale-up between two
   * DNS refreshes) is looked up once more, not refused.
   */
  private async nextHop(nodeId: string, field: string): Promise<string | undefined> {
    const { stage } = this.runtime;
    if (stage.isLast) {
      if (nodeId !== '') throw ServiceError.invalidArgument(field, 'the last stage has no next hop');
      return undefined;
    }
    const next = this.directory.find(nodeId) ?? (await this.directory.findOrRefresh(nodeId));
    if (next === undefined || next.stage !== stage.index + 1) throw ServiceError.invalidArgument(field, `"${nodeId}" is not a configured replica of stage ${stage.index + 1}`);
    return next.id;
  }

  /**
   * A partial replay (see RewindSequence in node.proto): cut back, take the new token and next
   * hop, and with `refill` pass the cached hidden states of the kept positions on to the new next
   * hop. The cut waits for the steps queued before it, so a step of the failed placement that
   * was still running here cannot write past it.
   */
  private async rewind(session: CoordinatorSession, rewind: RewindSequence__Output): Promise<void> {
    const { stage, shape } = this.runtime;
    try {
      const sequence = this.sequences.ownedBy(rewind.sequence_id, session);
      if (sequence === undefined) throw new ServiceError(grpc.status.NOT_FOUND, `rewind.sequence_id: sequence ${rewind.sequence_id} is not open here`);
      if (rewind.token.length < PROTOCOL_LIMITS.minTokenBytes || rewind.token.length > PROTOCOL_LIMITS.maxTokenBytes) {
        throw ServiceError.invalidArgument('rewind.token', `must be ${PROTOCOL_LIMITS.minTokenBytes}-${PROTOCOL_LIMITS.maxTokenBytes} bytes`);
      }
      if (rewind.length > shape.contextLength) throw ServiceError.invalidArgument('rewind.length', `at most the model's ${shape.contextLength} positions, got ${rewind.length}`);
      const nextNodeId = await this.nextHop(rewind.next_node_id, 'rewind.next_node_id');
      if (sequence.rewinding) throw new ServiceError(grpc.status.FAILED_PRECONDITION, `rewind.sequence_id: sequence ${rewind.sequence_id} is being rewound already`);
      if (rewind.refill) {
        if (stage.isLast) throw ServiceError.invalidArgument('rewind.refill', 'the last stage has no next stage to refill');
        if (rewind.length === 0) throw ServiceError.invalidArgument('rewind.length', 'a refill needs at least one position');
        if (rewind.history.length !== rewind.length) throw ServiceError.invalidArgument('rewind.history', `must hold the ${rewind.length} kept token ids, got ${rewind.history.length}`);
        if (rewind.history.some((id) => id >= shape.vocabSize)) throw ServiceError.invalidArgument('rewind.history', `token ids must be below ${shape.vocabSize}`);
        if (rewind.timeout_ms === 0) throw ServiceError.invalidArgument('rewind.timeout_ms', 'a refill needs a deadline');
      }
      // From here until the cut settles no step is accepted: one of the failed placement, still
      // carrying the old token, would be queued behind the cut and write past it.
      sequence.rewinding = true;
      try {
        await this.runtime.rewindInOrder(sequence.sequenceId, rewind.length);
        if (this.sequences.ownedBy(sequence.sequenceId, session) !== sequence) throw new ServiceError(grpc.status.NOT_FOUND, `rewind.sequence_id: sequence ${rewind.sequence_id} was released`);
        this.hidden?.truncate(sequence.sequenceId, rewind.length);
        this.samplers.rewind(sequence.sequenceId, rewind.length);
        sequence.token = Buffer.from(rewind.token);
        sequence.nextNodeId = nextNodeId;
      } finally {
        sequence.rewinding = false;
      }
      if (rewind.refill && this.hidden !== undefined) {
        const states = this.hidden.read(sequence.sequenceId, rewind.length);
        const refill: IncomingStep = {
          stepId: Number(rewind.step_id),
          rows: [{ sequenceId: sequence.sequenceId, token: sequence.token, pastLength: 0, tokenIds: rewind.history, sample: false, generatedIndex: 0 }],
          hiddenStates: undefined,
          timeoutMs: rewind.timeout_ms,
          requestId: safeRequestId(rewind.request_id),
          timings: [],
          fillOnly: true,
        };
        this.forward(refill, session, nextNodeId as string, states, [], Date.now() + rewind.timeout_ms);
      }
      this.logger.info('sequence rewound', { request_id: safeRequestId(rewind.request_id), sequence_id: sequence.sequenceId, length: rewind.length, next_node_id: nextNodeId, refill: rewind.refill });
      session.send({ rewound: { sequence_id: rewind.sequence_id, code: grpc.status.OK } });
    } catch (error) {
      const serviceError = ServiceError.from(error);
      session.send({ rewound: { sequence_id: rewind.sequence_id, code: serviceError.code, message: serviceError.message } });
    }
  }

  /** A step into the first stage, from the coordinator that owns its sequences. */
  private acceptFromOwner(session: CoordinatorSession, message: Step__Output): void {
    let step: IncomingStep;
    try {
      step = this.parse(message);
      const owner = this.ownerOf(step);
      if (owner !== session) throw new ServiceError(grpc.status.NOT_FOUND, 'the step names sequences this session did not open');
    } catch (error) {
      this.reportFailure(session, message.step_id, ServiceError.from(error), this.options.nodeId, false);
      return;
    }
    this.enqueue(step, session);
  }

  private serveForward(call: grpc.ServerDuplexStream<ForwardMessage__Output, ForwardReply>): void {
    const reply = (answer: ForwardReply): void => {
      if (!call.cancelled && call.writable) call.write(answer);
    };
    call.on('data', (message: ForwardMessage__Output) => {
      let step: IncomingStep;
      let owner: CoordinatorSession;
      try {
        if (!message.step) throw ServiceError.invalidArgument('step', 'missing');
        step = this.parse(message.step);
        owner = this.ownerOf(step);
      } catch (error) {
        const serviceError = ServiceError.from(error);
        this.metrics.stepErrors.inc({ code: grpc.status[serviceError.code] });
        reply({ forward_id: message.forward_id, code: serviceError.code, message: serviceError.message });
        return;
      }
      this.enqueue(step, owner);
    });
    call.on('end', () => call.end());
    call.on('error', (error) => this.logger.debug('forward stream closed', { error: String(error) }));
  }

  private parse(message: Step__Output): IncomingStep {
    const { stage, shape } = this.runtime;
    return parseIncomingStep(message, { isFirst: stage.isFirst, hiddenSize: shape.hiddenSize });
  }

  /**
   * The session that owns every row of the step. A row with an unknown sequence or a wrong token
   * gets the same answer as a row of someone else's: NOT_FOUND without details.
   */
  private ownerOf(step: IncomingStep): CoordinatorSession {
    let owner: CoordinatorSession | undefined;
    for (const row of step.rows) {
      const sequence = this.sequences.authorize(row.sequenceId, row.token);
      if (sequence === undefined) throw new ServiceError(grpc.status.NOT_FOUND, `step.rows: sequence ${row.sequenceId} is not open here`);
      if (owner !== undefined && sequence.owner !== owner) throw ServiceError.invalidArgument('step.rows', 'the rows belong to different coordinators');
      owner = sequence.owner;
    }
    return owner as CoordinatorSession;
  }

  private enqueue(step: IncomingStep, owner: CoordinatorSession): void {
    const { stage } = this.runtime;
    if (step.timeoutMs <= 0) {
      this.reportFailure(owner, step.stepId, new ServiceError(grpc.status.DEADLINE_EXCEEDED, `step ${step.stepId} reached ${this.options.nodeId} with no time left`), this.options.nodeId, false);
      return;
    }
    const deadlineUnixMs = Date.now() + step.timeoutMs;
    let nextNodeId: string | undefined;
    if (!stage.isLast) {
      const hops = new Set(step.rows.map((row) => this.sequences.ownedBy(row.sequenceId, owner)?.nextNodeId));
      if (hops.size !== 1) {
        this.reportFailure(owner, step.stepId, ServiceError.invalidArgument('step.rows', 'the rows were opened with different next hops'), this.options.nodeId, false);
        return;
      }
      nextNodeId = [...hops][0];
    }
    const stopTimer = this.metrics.forwardSeconds.startTimer();
    this.runtime
      .step({ rows: step.rows, hiddenStates: step.hiddenStates, deadlineUnixMs })
      .then((output) => {
        const forwardMs = stopTimer() * 1000;
        const timings: StageTiming[] = [...step.timings, { node_id: this.options.nodeId, stage: stage.index, forward_ms: forwardMs, rows: step.rows.length }];
        if (step.rows.some((row) => this.sequences.ownedBy(row.sequenceId, owner) === undefined)) {
          // Released while the step ran (the coordinator settled the step already, e.g. after this
          // replica was frozen): nobody waits for the result, and the release, queued behind the
          // step, frees what it wrote.
          this.logger.debug('step finished after its sequences were released; result dropped', { step_id: step.stepId });
          this.recordStep(step);
          return;
        }
        // The result leaves first, the bookkeeping comes after: Node flushes a write only once
        // this callback has returned, so nothing here runs between the step and the next stage.
        if (stage.isLast) {
          owner.send({ result: { step_id: step.stepId, tokens: this.sample(step, output), timings } });
          this.recordStep(step);
          return;
        }
        const hidden = output.hiddenStates as Float32Array;
        if (step.fillOnly) {
          // The later stages hold these positions already: the refill ends here.
          owner.send({ result: { step_id: step.stepId, tokens: [], timings } });
        } else {
          this.forward(step, owner, nextNodeId as string, hidden, timings, deadlineUnixMs);
        }
        let offset = 0;
        for (const row of step.rows) {
          this.hidden?.write(row.sequenceId, row.pastLength, row.tokenIds.length, hidden, offset);
          offset += row.tokenIds.length;
        }
        this.recordStep(step);
      })
      .catch((error: unknown) => {
        stopTimer();
        this.reportFailure(owner, step.stepId, ServiceError.from(error), this.options.nodeId, false);
      });
  }

  private recordStep(step: IncomingStep): void {
    this.metrics.batchSize.observe(step.rows.length);
    this.updateKvGauges();
  }

  private forward(step: IncomingStep, owner: CoordinatorSession, nextNodeId: string, hidden: Float32Array, timings: StageTiming[], deadlineUnixMs: number): void {
    const forwardId = this.nextForwardId++;
    this.rememberForward(forwardId, owner, step.stepId);
    const tokens = step.rows.reduce((n, row) => n + row.tokenIds.length, 0);
    this.metrics.sentBytes.inc(hidden.byteLength);
    let link;
    try {
      link = this.links.to(nextNodeId);
    } catch (error) {
      this.reportFailure(owner, step.stepId, ServiceError.from(error), nextNodeId, true);
      return;
    }
    link
      .send({
        forward_id: forwardId,
        step: {
          step_id: step.stepId,
          rows: step.rows.map((row) => ({
            sequence_id: row.sequenceId,
            token: row.token,
            past_length: row.pastLength,
            token_ids: [...row.tokenIds],
            sample: row.sample,
            generated_index: row.generatedIndex,
          })),
          hidden_states: encodeTensor(float32Tensor([tokens, this.runtime.shape.hiddenSize], hidden)),
          timeout_ms: Math.max(0, Math.floor(deadlineUnixMs - Date.now())),
          request_id: step.requestId,
          timings,
          fill_only: step.fillOnly,
        },
      })
      .catch((error: unknown) => this.reportFailure(owner, step.stepId, ServiceError.from(error), nextNodeId, true));
  }

  private sample(step: IncomingStep, output: StepOutput): SampledToken[] {
    const vocab = this.runtime.shape.vocabSize;
    const logits = output.logits as Float32Array;
    const logsumexp = output.logsumexp as Float32Array;
    const tokens: SampledToken[] = [];
    step.rows.forEach((row, r) => {
      const summary = { logsumexp: logsumexp[r], argmax: output.argmax?.[r] };
      const picked = this.samplers.feed(row.sequenceId, row.tokenIds, row.sample, row.generatedIndex, logits.subarray(r * vocab, (r + 1) * vocab), summary);
      if (picked === undefined) return;
      tokens.push({
        sequence_id: row.sequenceId,
        token_id: picked.tokenId,
        logprob: picked.logprob,
        top_logprobs: picked.topLogprobs.map((alt) => ({ token_id: alt.tokenId, logprob: alt.logprob })),
      });
    });
    return tokens;
  }

  private reportFailure(owner: CoordinatorSession, stepId: number, error: ServiceError, nodeId: string, unreachable: boolean): void {
    this.metrics.stepErrors.inc({ code: grpc.status[error.code] });
    this.logger.warn('step failed', { step_id: stepId, code: grpc.status[error.code], error: error.message, node: nodeId, unreachable });
    owner.send({ failed: { step_id: stepId, code: error.code, message: error.message, node_id: nodeId, unreachable } });
  }

  /** The next hop could not attribute a step we passed on: tell the step's owner. */
  private onForwardReply(peerId: string, reply: ForwardReply__Output): void {
    const entry = this.forwarded.get(reply.forward_id);
    if (entry === undefined) return;
    this.forwarded.delete(reply.forward_id);
    this.reportFailure(entry.owner, entry.stepId, new ServiceError(reply.code as grpc.status, `${peerId}: ${reply.message}`), peerId, false);
  }

  private rememberForward(forwardId: number, owner: CoordinatorSession, stepId: number): void {
    const now = performance.now();
    this.forwarded.set(forwardId, { owner, stepId, at: now });
    // Oldest first (insertion order): forget what the next hop can no longer answer about.
    for (const [id, entry] of this.forwarded) {
      if (now - entry.at < FORWARD_MEMORY_MS) break;
      this.forwarded.delete(id);
    }
  }

  private async releaseFor(session: CoordinatorSession, release: ReleaseSequences__Output): Promise<void> {
    const ids = release.sequence_ids.slice(0, PROTOCOL_LIMITS.maxReleaseIds);
    // Only the owner releases; an id it does not own is skipped without saying whether it exists.
    // An id still opening (its reservation under way) is released as soon as the open completes.
    for (const id of ids) {
      const opening = this.opening.get(id);
      if (opening !== undefined && opening.session === session) opening.released = true;
    }
    const owned = ids.filter((id) => this.sequences.ownedBy(id, session) !== undefined);
    const released = await Promise.all(owned.map((id) => this.release(id)));
    session.send({ released: { sequence_ids: owned.filter((_, i) => released[i]) } });
  }

  private async release(sequenceId: string): Promise<boolean> {
    this.sequences.delete(sequenceId);
    this.samplers.delete(sequenceId);
    this.hidden?.delete(sequenceId);
    this.releasing.add(sequenceId);
    try {
      return await this.runtime.releaseInOrder(sequenceId);
    } finally {
      this.releasing.delete(sequenceId);
      this.updateKvGauges();
    }
  }

  private async dropIdleSequences(): Promise<void> {
    const dropped = await this.runtime.dropIdle(this.options.kvIdleTtlMs, Date.now());
    // A sequence that was opened but never stepped ages from its open: that too is an orphan.
    for (const id of dropped) {
      this.sequences.delete(id);
      this.samplers.delete(id);
      this.hidden?.delete(id);
    }
    if (dropped.length > 0) {
      this.logger.info('dropped idle sequences', { sequences: dropped.length, ttl_ms: this.options.kvIdleTtlMs });
      this.updateKvGauges();
    }
  }

  private updateKvGauges(): void {
    const kv = this.runtime.kvStats();
    this.metrics.kvSequences.set(kv.sequences);
    this.metrics.kvBytes.set(kv.bytes);
    this.metrics.hiddenCacheBytes.set(this.hidden?.bytes ?? 0);
  }
}
