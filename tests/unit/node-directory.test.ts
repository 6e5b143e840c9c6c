import type { NodeEntry } from '../../shared/config';
import { NodeDirectory } from '../../shared/node-directory';
import { FakeDns } from '../support/fake-dns';

const REFRESH_MS = 10;
const NODE2_HOST = 'node2.model-inference.svc.cluster.local';
const NODE1: NodeEntry = { id: 'node1', address: '127.0.0.1:50051', modelPart: 0, metricsPort: 9201, discovery: 'static', intraOpThreads: 1 };
const NODE2: NodeEntry = { id: 'node2', address: `${NODE2_HOST}:50052`, modelPart: 1, metricsPort: 9202, discovery: 'dns', intraOpThreads: 1 };

describe('NodeDirectory', () => {
  let dns: FakeDns;
  const directories: NodeDirectory[] = [];

  async function started(entries: readonly NodeEntry[] = [NODE1, NODE2]): Promise<NodeDirectory> {
    const directory = new NodeDirectory(entries, dns.lookup, REFRESH_MS);
    directories.push(directory);
    await directory.start();
    return directory;
  }

  const ids = (directory: NodeDirectory): string[] => directory.replicas().map((r) => r.id);

  /** The replica ids the directory lists each time it tells its listeners of a change. */
  function changesOf(directory: NodeDirectory): string[][] {
    const changes: string[][] = [];
    directory.onChange(() => changes.push(ids(directory)));
    return changes;
  }

  beforeEach(() => {
    dns = new FakeDns();
  });

  afterEach(() => {
    for (const directory of directories.splice(0)) directory.stop();
  });

  test("a dns entry is one replica per address its name resolves to, named <entry>@<ip>, at the entry's port and stage; a static entry is one replica as configured", async () => {
    dns.answer(NODE2_HOST, ['10.0.0.9', '10.0.0.7', '10.0.0.7', 'fd00::7']);
    const directory = await started();
    expect(directory.replicas()).toEqual([
      { id: 'node1', address: '127.0.0.1:50051', stage: 0, entryId: 'node1', metricsPort: 9201 },
      { id: 'node2@10.0.0.7', address: '10.0.0.7:50052', stage: 1, entryId: 'node2', metricsPort: 9202 },
      { id: 'node2@10.0.0.9', address: '10.0.0.9:50052', stage: 1, entryId: 'node2', metricsPort: 9202 },
      { id: 'node2@fd00::7', address: '[fd00::7]:50052', stage: 1, entryId: 'node2', metricsPort: 9202 },
    ]);
    expect(directory.ofStage(1).map((r) => r.id)).toEqual(['node2@10.0.0.7', 'node2@10.0.0.9', 'node2@fd00::7']);
    expect(directory.find('node2@10.0.0.9')?.address).toBe('10.0.0.9:50052');
    // The entry itself is no replica: only what its name resolves to is.
    expect(directory.find('node2')).toBeUndefined();
    expect(dns.lookups(NODE2_HOST)).toBe(1);
  });

  test('a replica appears when its address starts resolving and goes when it stops, each change told to the listeners; the static entry stays', async () => {
    dns.answer(NODE2_HOST, ['10.0.0.7']);
    const directory = await started();
    const changes = changesOf(directory);
    dns.answer(NODE2_HOST, ['10.0.0.7', '10.0.0.8']);
    await dns.refreshed(NODE2_HOST);
    expect(changes).toEqual([['node1', 'node2@10.0.0.7', 'node2@10.0.0.8']]);
    expect(directory.find('node2@10.0.0.8')).toEqual({ id: 'node2@10.0.0.8', address: '10.0.0.8:50052', stage: 1, entryId: 'node2', metricsPort: 9202 });
    dns.answer(NODE2_HOST, ['10.0.0.8']);
    await dns.refreshed(NODE2_HOST);
    expect(changes).toEqual([
      ['node1', 'node2@10.0.0.7', 'node2@10.0.0.8'],
      ['node1', 'node2@10.0.0.8'],
    ]);
    expect(directory.find('node2@10.0.0.7')).toBeUndefined();
  });

  test('a refresh that resolves the same addresses, in any order and with repeats, tells no listener', async () => {
    dns.answer(NODE2_HOST, ['10.0.0.7', '10.0.0.8']);
    const directory = await started();
    const changes = changesOf(directory);
    await dns.refreshed(NODE2_HOST);
    dns.answer(NODE2_HOST, ['10.0.0.8', '10.0.0.7', '10.0.0.8']);
    await dns.refreshed(NODE2_HOST);
    await dns.refreshed(NODE2_HOST);
    expect(changes).toEqual([]);
    expect(ids(directory)).toEqual(['node1', 'node2@10.0.0.7', 'node2@10.0.0.8']);
  });

  test('a lookup that fails keeps the last known replicas and tells no listener; the next answer applies again', async () => {
    dns.answer(NODE2_HOST, ['10.0.0.7', '10.0.0.8']);
    const directory = await started();
    const changes = changesOf(directory);
    dns.fail(NODE2_HOST);
    await dns.refreshed(NODE2_HOST);
    await dns.refreshed(NODE2_HOST);
    expect(ids(directory)).toEqual(['node1', 'node2@10.0.0.7', 'node2@10.0.0.8']);
    expect(changes).toEqual([]);
    dns.answer(NODE2_HOST, ['10.0.0.8']);
    await dns.refreshed(NODE2_HOST);
    expect(changes).toEqual([['node1', 'node2@10.0.0.8']]);
  });

  test('a name that does not resolve at start gives its entry no replica until it does; the static entry is there meanwhile', async () => {
    const directory = await started();
    const changes = changesOf(directory);
    expect(ids(directory)).toEqual(['node1']);
    expect(directory.ofStage(1)).toEqual([]);
    dns.answer(NODE2_HOST, ['10.0.0.7']);
    await dns.refreshed(NODE2_HOST);
    expect(changes).toEqual([['node1', 'node2@10.0.0.7']]);
  });

  test('static entries alone are never looked up, and stop ends the refreshes of dns entries', async () => {
    const staticOnly = await started([NODE1, { ...NODE1, id: 'node2', address: 'localhost:50052', modelPart: 1 }]);
    dns.answer(NODE2_HOST, ['10.0.0.7']);
    const discovering = await started();
    await dns.refreshed(NODE2_HOST);
    discovering.stop();
    const lookups = dns.lookups(NODE2_HOST);
    await new Promise((resolve) => setTimeout(resolve, 10 * REFRESH_MS));
    expect([dns.lookups('127.0.0.1'), dns.lookups('localhost'), dns.lookups(NODE2_HOST)]).toEqual([0, 0, lookups]);
    expect(staticOnly.replicas()).toEqual([
      { id: 'node1', address: '127.0.0.1:50051', stage: 0, entryId: 'node1', metricsPort: 9201 },
      { id: 'node2', address: 'localhost:50052', stage: 1, entryId: 'node2', metricsPort: 9201 },
    ]);
  });

  test('a slow resolver: timer ticks and findOrRefresh join the lookup under way instead of starting more, and its answer applies once', async () => {
    dns.answer(NODE2_HOST, ['10.0.0.7']);
    const directory = await started();
    const changes = changesOf(directory);
    const release = dns.hold(NODE2_HOST);
    dns.answer(NODE2_HOST, ['10.0.0.7', '10.0.0.9']);
    await dns.refreshed(NODE2_HOST);
    const during = dns.lookups(NODE2_HOST);
    const found = directory.findOrRefresh('node2@10.0.0.9');
    await new Promise((resolve) => setTimeout(resolve, 10 * REFRESH_MS));
    expect(dns.lookups(NODE2_HOST)).toBe(during);
    release();
    expect((await found)?.address).toBe('10.0.0.9:50052');
    expect(changes).toEqual([['node1', 'node2@10.0.0.7', 'node2@10.0.0.9']]);
  });

  test('an unsubscribed listener is told no more changes', async () => {
    dns.answer(NODE2_HOST, ['10.0.0.7']);
    const directory = await started();
    const told: number[] = [];
    const unsubscribe = directory.onChange(() => told.push(1));
    dns.answer(NODE2_HOST, ['10.0.0.8']);
    await dns.refreshed(NODE2_HOST);
    unsubscribe();
    dns.answer(NODE2_HOST, ['10.0.0.9']);
    await dns.refreshed(NODE2_HOST);
    expect(told).toEqual([1]);
    expect(ids(directory)).toEqual(['node1', 'node2@10.0.0.9']);
  });

  test('findOrRefresh: a replica DNS answers for but the directory has not listed yet is found by one lookup at once; other ids never cause one, and lookups are rate-limited', async () => {
    dns.answer(NODE2_HOST, ['10.0.0.7']);
    // No periodic refresh within the test: only findOrRefresh can look the name up again.
    const directory = new NodeDirectory([NODE1, NODE2], dns.lookup, 60_000);
    directories.push(directory);
    await directory.start();
    const before = dns.lookups(NODE2_HOST);
    dns.answer(NODE2_HOST, ['10.0.0.7', '10.0.0.9']);
    expect(directory.find('node2@10.0.0.9')).toBeUndefined();
    expect((await directory.findOrRefresh('node2@10.0.0.9'))?.address).toBe('10.0.0.9:50052');
    expect(dns.lookups(NODE2_HOST)).toBe(before + 1);
    // Known ids, static ids, ids of no entry: no lookup.
    expect((await directory.findOrRefresh('node2@10.0.0.7'))?.id).toBe('node2@10.0.0.7');
    expect(await directory.findOrRefresh('node1@10.0.0.1')).toBeUndefined();
    expect(await directory.findOrRefresh('10.6.6.6:50052')).toBeUndefined();
    expect(await directory.findOrRefresh('node9@10.0.0.1')).toBeUndefined();
    expect(dns.lookups(NODE2_HOST)).toBe(before + 1);
    // An address DNS does not answer: one lookup, then none for a while however often it is asked.
    dns.answer(NODE2_HOST, ['10.0.0.7', '10.0.0.9', '10.0.0.11']);
    for (let i = 0; i < 5; i++) expect(await directory.findOrRefresh('node2@10.6.6.6')).toBeUndefined();
    expect(dns.lookups(NODE2_HOST)).toBe(before + 1);
    expect(directory.find('node2@10.0.0.11')).toBeUndefined();
  });
});

