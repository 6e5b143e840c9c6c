import net from 'node:net';
import type { AppConfig } from '../../shared/config';
import { bindHostFor } from '../../shared/grpc/channel';

export interface ListenPort {
  readonly owner: string;
  readonly host: string;
  readonly port: number;
}

/** Every host:port the services of a config listen on (gRPC, metrics, the api). */
export function listenPorts(config: AppConfig): ListenPort[] {
  const portOf = (address: string): number => Number(address.slice(address.lastIndexOf(':') + 1));
  const ports: ListenPort[] = [
    { owner: 'api', host: config.api.host, port: config.api.port },
    { owner: 'tokenizer', host: bindHostFor(config.tokenizer.address), port: portOf(config.tokenizer.address) },
    { owner: 'tokenizer metrics', host: bindHostFor(config.tokenizer.address), port: config.tokenizer.metricsPort },
    { owner: 'coordinator', host: bindHostFor(config.coordinator.address), port: portOf(config.coordinator.address) },
    { owner: 'coordinator metrics', host: bindHostFor(config.coordinator.address), port: config.coordinator.metricsPort },
  ];
  for (const node of config.nodes) {
    const listen = node.bindAddress ?? node.address;
    ports.push({ owner: node.id, host: bindHostFor(listen), port: portOf(listen) });
    ports.push({ owner: `${node.id} metrics`, host: bindHostFor(listen), port: node.metricsPort });
  }
  return ports;
}

/** The ports another process already holds, each with what needs it. */
export async function takenPorts(ports: readonly ListenPort[]): Promise<ListenPort[]> {
  const taken: ListenPort[] = [];
  for (const port of ports) if (!(await canListen(port.host, port.port))) taken.push(port);
  return taken;
}

function canListen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}
