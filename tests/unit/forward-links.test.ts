import type * as grpc from '@grpc/grpc-js';
import type { ForwardMessage__Output } from '../../protos/generated/pipeserve/v1/ForwardMessage';
import type { ForwardReply } from '../../protos/generated/pipeserve/v1/ForwardReply';
import { ForwardLinks } from '../../services/node/forward-links';
import type { NodeEntry } from '../../shared/config';
import { startServer, type RunningServer } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import { createLogger } from '../../shared/logger';
import { NodeDirectory } from '../../shared/node-directory';
import { freeLoopbackPort } from '../../tools/free-port';
import { FakeDns } from '../support/fake-dns';

const REFRESH_MS = 20;
const WAIT_MS = 10_000;
const NODE2_HOST = 'node2.model-inference.svc.cluster.local';

describe('ForwardLinks over a directory that discovers the next stage by DNS', () => {
  const dns = new FakeDns();
  let directory: NodeDirectory;
  let links: ForwardLinks;
  let server: RunningServer | undefined;
  let port: number;

  beforeAll(async () => {
    port = await freeLoopbackPort();
    const entries: NodeEntry[] = [
      { id: 'node1', address: `127.0.0.1:${await freeLoopbackPort()}`, modelPart: 0, metricsPort: 9201, discovery: 'static', intraOpThreads: 1 },
      { id: 'node2', address: `${NODE2_HOST}:${port}`, modelPart: 1, metricsPort: 9202, discovery: 'dns', intraOpThreads: 1 },
    ];
    dns.answer(NODE2_HOST, ['127.0.0.1']);
    directory = new NodeDirectory(entries, dns.lookup, REFRESH_MS);
    await directory.start();
    links = new ForwardLinks(directory, { onReply: () => undefined }, createLogger('test', 'error'));
  });

  afterAll(() => {
    links?.closeAll();
    directory?.stop();
    server?.server.forceShutdown();
  });

  test('a link is made to a next-stage replica once its address resolves, reaches that replica, and is refused again once the address is gone', async () => {
    expect(() => links.to('node2@127.0.0.2')).toThrow('node2@127.0.0.2 is not a known replica');

    // The new replica's server: it records the forward ids it receives.
    const received: number[] = [];
    let streamsEnded = 0;
    server = await startServer(`127.0.0.2:${port}`, [
      {
        name: 'pipeserve.v1.ModelNode',
        definition: protos().node.pipeserve.v1.ModelNode.service,
        implementation: {
          Forward: (call: grpc.ServerDuplexStream<ForwardMessage__Output, ForwardReply>) => {
            call.on('data', (message: ForwardMessage__Output) => received.push(message.forward_id));
            call.on('end', () => {
              streamsEnded++;
              call.end();
            });
          },
        },
      },
    ]);
    dns.answer(NODE2_HOST, ['127.0.0.1', '127.0.0.2']);
    await dns.refreshed(NODE2_HOST);

    const link = links.to('node2@127.0.0.2');
    expect(link.address).toBe(`127.0.0.2:${port}`);
    await link.send({ forward_id: 7 });
    const end = Date.now() + WAIT_MS;
    while (!received.includes(7) && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(received).toEqual([7]);

    expect(links.peers).toEqual(['node2@127.0.0.2']);

    // The replica leaves DNS (scaled away): its link is closed at once, not kept for ever.
    dns.answer(NODE2_HOST, ['127.0.0.1']);
    await dns.refreshed(NODE2_HOST);
    expect(links.peers).toEqual([]);
    await expect(link.send({ forward_id: 8 })).rejects.toThrow('link to node2@127.0.0.2 is closed');
    while (streamsEnded === 0 && Date.now() < end + WAIT_MS) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(streamsEnded).toBe(1);
    expect(received).toEqual([7]);
    expect(() => links.to('node2@127.0.0.2')).toThrow('node2@127.0.0.2 is not a known replica');
  });
});
