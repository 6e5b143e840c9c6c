import type { Logger } from './logger';

/** Runs `close` once on SIGTERM or SIGINT, then exits; a second signal exits at once. */
export function onShutdownSignal(logger: Logger, close: () => Promise<void>): void {
  let closing = false;
  const handle = (signal: NodeJS.Signals): void => {
    if (closing) {
      logger.warn('second signal; exiting without finishing the shutdown', { signal });
      process.exit(1);
    }
    closing = true;
    logger.info('shutting down', { signal });
    close()
      .catch((error: unknown) => logger.error('shutdown failed', { error: String(error) }))
      .finally(() => process.exit(0));
  };
  process.on('SIGTERM', handle);
  process.on('SIGINT', handle);
}
