import path from 'node:path';
import { loadConfig } from '../../shared/config';
import { bindAddressFor, startServer } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import { createLogger } from '../../shared/logger';
import { createMetricsRegistry, startMetricsServer } from '../../shared/metrics';
import { readManifest } from '../../shared/model/manifest';
import { onShutdownSignal } from '../../shared/shutdown';
import { ChatTemplate } from './chat-template';
import { TextTokenizer } from './text-tokenizer';
import { createTokenizerHandlers } from './tokenizer-service';

/** Roughly 4 characters per token: a text this long cannot fit any GPT-2 context anyway. */
const MAX_TEXT_CHARS_PER_CONTEXT_TOKEN = 8;

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger('tokenizer', config.logLevel);
  const manifest = await readManifest(config.modelDir);
  const tokenizer = await TextTokenizer.load(config.modelDir);
  const registry = createMetricsRegistry('tokenizer');
  const handlers = createTokenizerHandlers(
    tokenizer,
    {
      vocabSize: manifest.config.vocabSize,
      maxTextChars: manifest.config.nPositions * MAX_TEXT_CHARS_PER_CONTEXT_TOKEN,
      chatTemplate: await ChatTemplate.load(config.modelDir),
    },
    registry,
    logger,
  );
  const server = await startServer(bindAddressFor(config.tokenizer.address), [
    { name: 'pipeserve.v1.Tokenizer', definition: protos().tokenizer.pipeserve.v1.Tokenizer.service, implementation: handlers },
  ]);
  const metricsServer = await startMetricsServer(registry, config.tokenizer.metricsPort);
  logger.info('tokenizer serving', { port: server.port, metrics_port: config.tokenizer.metricsPort, model_dir: path.relative(process.cwd(), config.modelDir) || '.' });
  onShutdownSignal(logger, async () => {
    await server.shutdown();
    metricsServer.close();
  });
}

main().catch((error: unknown) => {
  process.stderr.write(`tokenizer: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
