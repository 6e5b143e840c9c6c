import type { Registry } from 'prom-client';
import { ApiMetrics } from '../../services/api/api-metrics';
import { CoordinatorMetrics } from '../../services/coordinator/coordinator-metrics';
import { NodeMetrics } from '../../services/node/node-metrics';
import { ChatTemplate } from '../../services/tokenizer/chat-template';
import { createTokenizerHandlers, type TokenizerModel } from '../../services/tokenizer/tokenizer-service';
import { createLogger } from '../../shared/logger';
import { createMetricsRegistry } from '../../shared/metrics';

/** Of every process: prom-client's process and Node.js metrics, and the launcher's restart count. */
const SHARED_PREFIXES = ['pipeserve_process_', 'pipeserve_nodejs_'];
const SHARED_NAMES = ['pipeserve_service_restarts'];

const NO_TOKENIZER: TokenizerModel = { vocabSize: 1, encode: () => [], decode: () => '', indexOfUnknownId: () => -1 };
const NO_CHAT_CONFIG = { addBosToken: undefined, bosToken: undefined, eosToken: undefined, unkToken: undefined, padToken: undefined, chatTemplate: undefined, raw: {} };
const LIMITS = { maxTextBytes: 1, maxDecodeIds: 1, maxStreamMessageIds: 1, maxStreamIds: 1, maxChatMessages: 1 };

/** A registry from the shared factory with one service's metrics class registered on it. */
function registryWith(service: string, register: (registry: Registry) => unknown, labels?: Record<string, string>): Registry {
  const registry = createMetricsRegistry(service, labels);
  register(registry);
  return registry;
}

/** Each service's registry as its main.ts builds it: the shared factory plus the service's own metrics. */
const SERVICES: Record<string, { prefix: string; build: () => Registry }> = {
  api: {
    prefix: 'pipeserve_api_',
    build: () => registryWith('api', (r) => new ApiMetrics(r)),
  },
  tokenizer: {
    prefix: 'pipeserve_tokenizer_',
    build: () => {
      const registry = createMetricsRegistry('tokenizer');
      const logger = createLogger('tokenizer', 'error');
      logger.silent = true;
      createTokenizerHandlers({ tokenizer: NO_TOKENIZER, chatTemplate: ChatTemplate.fromConfig(NO_CHAT_CONFIG), limits: LIMITS }, registry, logger);
      return registry;
    },
  },
  coordinator: {
    prefix: 'pipeserve_coordinator_',
    build: () => registryWith('coordinator', (r) => new CoordinatorMetrics(r)),
  },
  node: {
    prefix: 'pipeserve_stage_',
    build: () => registryWith('node', (r) => new NodeMetrics(r), { node_id: 'node1', stage: '0' }),
  },
};

describe.each(Object.entries(SERVICES))('metric names of the %s', (service, { prefix, build }) => {
  test(`every name starts with pipeserve_: its own with ${prefix}, the shared ones with pipeserve_process_, pipeserve_nodejs_ or pipeserve_service_`, async () => {
    const all = (await build().getMetricsAsJSON()).map((metric) => metric.name);
    const own = all.filter((name) => !SHARED_NAMES.includes(name) && !SHARED_PREFIXES.some((p) => name.startsWith(p)));
    expect(own.length).toBeGreaterThan(0);
    expect(own.filter((name) => !name.startsWith(prefix))).toEqual([]);
    // prom-client's default metrics really are collected, under the prefix.
    expect(all).toEqual(expect.arrayContaining(['pipeserve_process_resident_memory_bytes', 'pipeserve_nodejs_heap_size_used_bytes', ...SHARED_NAMES]));
    expect(all.filter((name) => /^(node|process|nodejs|api|tokenizer|coordinator|service)_/.test(name))).toEqual([]);
  });

  test('every sample carries the service label', async () => {
    const samples = (await build().getMetricsAsJSON()).flatMap((metric) => metric.values);
    expect(samples.length).toBeGreaterThan(0);
    expect(samples.filter((sample) => sample.labels.service !== service)).toEqual([]);
  });
});
