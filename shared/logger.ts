import winston from 'winston';

/** The one logger factory: JSON lines with the service name (and node id / stage where given). */
export function createLogger(service: string, level = process.env.LOG_LEVEL ?? 'info', labels: Record<string, string | number> = {}): winston.Logger {
  return winston.createLogger({
    level,
    defaultMeta: { service, ...labels },
    format: winston.format.combine(winston.format.timestamp(), winston.format.errors({ stack: false }), winston.format.json()),
    transports: [new winston.transports.Console()],
  });
}

export type Logger = winston.Logger;
