/** Waits for a condition that another process (or the network) makes true; no timing assertion: jest's timeout bounds it. */
export async function eventually(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 10));
}
