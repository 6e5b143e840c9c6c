import { freeLoopbackPort } from '../../tools/free-port';

it('never hands out the same port twice in one process, though each is released before the next is asked for', async () => {
  const ports: number[] = [];
  for (let i = 0; i < 300; i++) ports.push(await freeLoopbackPort());
  expect(new Set(ports).size).toBe(ports.length);
  for (const port of ports) {
    expect(port).toBeGreaterThanOrEqual(20_000);
    expect(port).toBeLessThan(32_768);
  }
});
