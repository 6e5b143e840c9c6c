import path from 'node:path';
import { loadConfig } from '../../shared/config';
import { bindAddressFor, bindHostFor, startServer, useTransport } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import { createLogger } from '../../shared/logger';
import { createMetricsRegistry, startMetricsServer } from '../../shared/metrics';
import { readManifest } from '../../shared/model/manifest';
import { onShutdownSignal } from '../../shared/shutdown';
import { ChatTemplate } from './chat-template';
import { TextTokenizer } from './text-tokenizer';
import { tokenizerLimitsFor } from './tokenizer-limits';
import { createTokenizerHandlers } from './tokenizer-service';

async function main(): Promise<void> {
  const config = loadConfig();
  useTransport(config);
  const logger = createLogger('tokenizer', config.logLevel);
  const manifest = await readManifest(config.modelDir);
  const tokenizer = await TextTokenizer.load(config.modelDir);
  const registry = createMetricsRegistry('tokenizer');
  const chatTemplate = ChatTemplate.fromConfig(tokenizer.config, path.join(config.modelDir, 'tokenizer_config.json'));
  const limits = tokenizerLimitsFor(manifest.shape.contextLength);
  const handlers = createTokenizerHandlers({ tokenizer, chatTemplate, limits }, registry, logger);
  const server = await startServer(bindAddressFor(config.tokenizer.address), [
    { name: 'pipeserve.v1.Tokenizer', definition: protos().tokenizer.pipeserve.v1.Tokenizer.service, implementation: handlers },
  ]);
  const metricsServer = await startMetricsServer(registry, config.tokenizer.metricsPort, bindHostFor(config.tokenizer.address));
  logger.info('tokenizer serving', { port: server.port, metrics_port: config.tokenizer.metricsPort, model_dir: path.relative(process.cwd(), config.modelDir) || '.', chat_template: chatTemplate.kind, limits });
  onShutdownSignal(logger, async () => {
    await server.shutdown();
    metricsServer.close();
  });
}

main().catch((error: unknown) => {
  process.stderr.write(`tokenizer: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
