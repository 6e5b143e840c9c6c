import type { Logger } from './logger';

/** Set by the launcher on its children: the pid to outlive no longer than a moment. */
export const PARENT_PID_ENV = 'PIPESERVE_PARENT_PID';
/** Set by the launcher on its children: how many times this service was restarted. */
export const RESTARTS_ENV = 'PIPESERVE_RESTARTS';
/** How often a child checks that its launcher is still there. */
const PARENT_CHECK_INTERVAL_MS = 500;

/**
 * Runs `close` once on SIGTERM or SIGINT — or when the launcher that started this process is
 * gone (PIPESERVE_PARENT_PID), so nothing outlives a killed launcher — then exits; a second
 * signal exits at once.
 */
export function onShutdownSignal(logger: Logger, close: () => Promise<void>): void {
  let closing = false;
  const shutDown = (reason: string): void => {
    if (closing) {
      logger.warn('second signal; exiting without finishing the shutdown', { signal: reason });
      process.exit(1);
    }
    closing = true;
    logger.info('shutting down', { signal: reason });
    close()
      .catch((error: unknown) => logger.error('shutdown failed', { error: String(error) }))
      .finally(() => process.exit(0));
  };
  process.on('SIGTERM', () => shutDown('SIGTERM'));
  process.on('SIGINT', () => shutDown('SIGINT'));
  watchProcess(Number(process.env[PARENT_PID_ENV]), () => shutDown('launcher gone'));
}

/** Calls `gone` once when process `pid` no longer exists (no-op for an invalid pid). */
export function watchProcess(pid: number, gone: () => void): void {
  if (!Number.isSafeInteger(pid) || pid <= 1) return;
  const timer = setInterval(() => {
    if (isAlive(pid)) return;
    clearInterval(timer);
    gone();
  }, PARENT_CHECK_INTERVAL_MS);
  timer.unref();
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Restarts of this service so far, as the launcher counted them. */
export function restartsOfThisProcess(): number {
  const value = Number(process.env[RESTARTS_ENV]);
  return Number.isSafeInteger(value) && value >= 0 ? value : 0;
}
