import type { AddressLookup } from '../../shared/node-directory';

/** How long `refreshed` waits for a directory's next lookup of a name. */
const REFRESH_WAIT_MS = 5_000;

/**
 * A resolver whose answers the test sets, for a NodeDirectory's `lookup`: `answer` gives a name
 * its A records, `fail` makes its lookups throw as getaddrinfo does for a name it cannot resolve
 * (ENOTFOUND); a name never answered fails too. It counts the lookups of each name, so a test can
 * wait for the directory's next refresh.
 */
export class FakeDns {
  private readonly answers = new Map<string, readonly string[] | Error>();
  private readonly counts = new Map<string, number>();

  private readonly holds = new Map<string, Promise<void>>();

  readonly lookup: AddressLookup = async (host) => {
    this.counts.set(host, this.lookups(host) + 1);
    await this.holds.get(host);
    const answer = this.answers.get(host) ?? notFound(host);
    if (answer instanceof Error) throw answer;
    return answer;
  };

  answer(host: string, addresses: readonly string[]): void {
    this.answers.set(host, addresses);
  }

  /** Makes lookups of `host` wait (a slow resolver) until the returned function is called. */
  hold(host: string): () => void {
    let release = (): void => undefined;
    this.holds.set(host, new Promise<void>((resolve) => (release = resolve)));
    return () => {
      this.holds.delete(host);
      release();
    };
  }

  fail(host: string): void {
    this.answers.set(host, notFound(host));
  }

  lookups(host: string): number {
    return this.counts.get(host) ?? 0;
  }

  /**
   * Resolves once a directory looked `host` up again after this call. The answer comes at once,
   * so the refresh that asked has applied it (and told its listeners) before a timer fires.
   */
  async refreshed(host: string): Promise<void> {
    const target = this.lookups(host) + 1;
    const end = Date.now() + REFRESH_WAIT_MS;
    while (this.lookups(host) < target) {
      if (Date.now() > end) throw new Error(`no lookup of ${host} within ${REFRESH_WAIT_MS} ms`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
}

function notFound(host: string): Error {
  return Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND', hostname: host });
}
