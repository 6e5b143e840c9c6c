import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeCheckpoint } from '../../tools/families/checkpoint';
import { gpt2Checkpoint, gpt2Shape } from '../../tools/families/gpt2/gpt2-family';
import { readSafetensors, writeSafetensors } from '../../shared/model/safetensors';
import { randomGpt2Checkpoint } from '../../tools/init/random-gpt2';
import { runModelPullCli } from '../../tools/model-pull';
import { hubDownload } from '../../tools/pull/hub-download';
import { MINI_GPT2_CONFIG } from '../support/mini-gpt2-config';
import { writeRandomLlamaCheckpoint } from '../support/random-llama-checkpoint';

const REPO = 'someone/tiny-gpt2';
const TOKENIZER = {
  tokenizerJson: { model: { type: 'BPE', vocab: { a: 0, b: 1 }, merges: [] }, added_tokens: [{ id: 11, content: '<|endoftext|>' }] },
  tokenizerConfigJson: { model_max_length: 16 },
};

interface SeenRequest {
  readonly url: string;
  readonly range?: string;
  readonly authorization?: string;
}

/** Per-test server behaviour: which files exist and how the server misbehaves. */
interface Behaviour {
  files: Map<string, Buffer>;
  /**
   * The first time `file` is asked for, send half of it and drop the connection once the client
   * has stored that half in `partialPath` (so the test does not depend on timing).
   */
  dropHalfwayOnce?: { file: string; partialPath: string };
  ignoreRange?: boolean;
  wrongLinkedSize?: string;
}

describe('hubDownload from a local Hub', () => {
  let root: string;
  let server: http.Server;
  let endpoint: string;
  let behaviour: Behaviour;
  let seen: SeenRequest[];
  let single: Map<string, Buffer>;
  let caseNumber = 0;

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'hub-download-'));
    const source = path.join(root, 'source');
    await writeCheckpoint(source, gpt2Checkpoint(randomGpt2Checkpoint(MINI_GPT2_CONFIG, 11)), TOKENIZER);
    single = new Map();
    for (const name of await readdir(source)) single.set(name, await readFile(path.join(source, name)));

    server = http.createServer((req, res) => {
      seen.push({ url: req.url ?? '', range: req.headers.range, authorization: req.headers.authorization });
      const prefix = `/${REPO}/resolve/main/`;
      const name = req.url?.startsWith(prefix) ? decodeURIComponent(req.url.slice(prefix.length)) : undefined;
      const body = name === undefined ? undefined : behaviour.files.get(name);
      if (name === undefined || body === undefined) {
        res.writeHead(404).end('Entry not found');
        return;
      }
      const drop = behaviour.dropHalfwayOnce;
      if (drop?.file === name) {
        behaviour.dropHalfwayOnce = undefined;
        const half = Math.floor(body.length / 2);
        res.writeHead(200, { 'Content-Length': body.length });
        res.write(body.subarray(0, half));
        const poll = setInterval(() => {
          void stat(drop.partialPath).then(
            (s) => {
              if (s.size < half) return;
              clearInterval(poll);
              res.destroy();
            },
            () => undefined,
          );
        }, 10);
        return;
      }
      const linkedSize = behaviour.wrongLinkedSize === name ? body.length + 1 : body.length;
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      if (range !== null && !behaviour.ignoreRange) {
        const start = Number(range[1]);
        res.writeHead(206, { 'Content-Range': `bytes ${start}-${body.length - 1}/${body.length}`, 'Content-Length': body.length - start });
        res.end(body.subarray(start));
        return;
      }
      res.writeHead(200, { 'Content-Length': body.length, 'X-Linked-Size': linkedSize });
      res.end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    await rm(root, { recursive: true, force: true });
  });

  beforeEach(() => {
    behaviour = { files: new Map(single) };
    seen = [];
  });

  const freshOut = (): string => path.join(root, `out-${caseNumber++}`);
  const pull = (out: string, token?: string) => hubDownload({ repo: REPO, revision: 'main', out, endpoint, token });

  async function expectSameFiles(out: string): Promise<void> {
    for (const [name, bytes] of behaviour.files) expect((await readFile(path.join(out, name))).equals(bytes)).toBe(true);
  }

  test('downloads config, tokenizer files and model.safetensors, sends the token, and validates the folder', async () => {
    const out = freshOut();
    const checkpoint = await pull(out, 'secret');
    expect(checkpoint.model.shape).toEqual(gpt2Shape(MINI_GPT2_CONFIG));
    expect(checkpoint.dir).toBe(out);
    expect(checkpoint.tokenizerFiles).toEqual([path.join(out, 'tokenizer.json'), path.join(out, 'tokenizer_config.json')]);
    await expectSameFiles(out);
    expect(seen.every((r) => r.authorization === 'Bearer secret')).toBe(true);
    expect(seen.map((r) => r.url)).toEqual(
      ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'special_tokens_map.json', 'model.safetensors'].map((f) => `/${REPO}/resolve/main/${f}`),
    );
    await expect(stat(`${out}.download`)).rejects.toThrow('ENOENT');
  });

  test('an interrupted download resumes with a Range request', async () => {
    const out = freshOut();
    behaviour.dropHalfwayOnce = { file: 'model.safetensors', partialPath: `${out}.download/model.safetensors.incomplete` };
    await pull(out);
    const requests = seen.filter((r) => r.url.endsWith('/model.safetensors'));
    expect(requests).toHaveLength(2);
    expect(requests[0].range).toBeUndefined();
    const half = Math.floor((single.get('model.safetensors') as Buffer).length / 2);
    expect(requests[1].range).toBe(`bytes=${half}-`);
    await expectSameFiles(out);
  });

  test('a partial file from an earlier run is resumed, and a server that answers 200 to the Range restarts it', async () => {
    const out = freshOut();
    await mkdir(`${out}.download`, { recursive: true });
    await writeFile(`${out}.download/model.safetensors.incomplete`, Buffer.alloc(100, 0xff));
    behaviour.ignoreRange = true;
    await pull(out);
    expect(seen.find((r) => r.url.endsWith('/model.safetensors'))?.range).toBe('bytes=100-');
    await expectSameFiles(out);
  });

  test('onProgress reports each downloaded file from 0 to its announced size, never going back', async () => {
    const events: [string, number, number | undefined][] = [];
    await hubDownload({ repo: REPO, revision: 'main', out: freshOut(), endpoint, onProgress: (file, done, total) => events.push([file, done, total]) });
    expect([...new Set(events.map(([file]) => file))].sort()).toEqual([...single.keys()].sort());
    for (const [name, body] of single) {
      const mine = events.filter(([file]) => file === name);
      expect(mine[0]).toEqual([name, 0, body.length]);
      expect(mine[mine.length - 1]).toEqual([name, body.length, body.length]);
      expect(mine.every(([, done], i) => i === 0 || done >= mine[i - 1][1])).toBe(true);
    }
  });

  test('a resumed file reports progress from the bytes it already had; one the server restarts, from 0', async () => {
    const weights = single.get('model.safetensors') as Buffer;
    const progressOf = async (ignoreRange: boolean): Promise<number[]> => {
      const out = freshOut();
      await mkdir(`${out}.download`, { recursive: true });
      await writeFile(`${out}.download/model.safetensors.incomplete`, weights.subarray(0, 100));
      behaviour.ignoreRange = ignoreRange;
      const done: number[] = [];
      await hubDownload({ repo: REPO, revision: 'main', out, endpoint, onProgress: (file, bytes) => file === 'model.safetensors' && done.push(bytes) });
      await expectSameFiles(out);
      return done;
    };
    const resumed = await progressOf(false);
    expect([resumed[0], resumed[resumed.length - 1]]).toEqual([100, weights.length]);
    const restarted = await progressOf(true);
    expect([restarted[0], restarted[restarted.length - 1]]).toEqual([0, weights.length]);
  });

  test('a size mismatch is rejected and nothing is written to out', async () => {
    const out = freshOut();
    behaviour.wrongLinkedSize = 'model.safetensors';
    const size = (single.get('model.safetensors') as Buffer).length;
    await expect(pull(out)).rejects.toThrow(`model.safetensors: size mismatch: the server announced ${size + 1} bytes, ${size} were written`);
    await expect(stat(out)).rejects.toThrow('ENOENT');
  });

  test('a 404 for a required file is rejected naming the file', async () => {
    const out = freshOut();
    behaviour.files.delete('tokenizer.json');
    await expect(pull(out)).rejects.toThrow(`tokenizer.json: not found at ${endpoint}/${REPO}/resolve/main/tokenizer.json (HTTP 404)`);
    await expect(stat(out)).rejects.toThrow('ENOENT');
  });

  test('without weights the error names both weight files', async () => {
    behaviour.files.delete('model.safetensors');
    await expect(pull(freshOut())).rejects.toThrow('neither model.safetensors nor model.safetensors.index.json exists');
  });

  test('a sharded checkpoint is fetched through its index', async () => {
    const tensors = await readSafetensors(path.join(root, 'source', 'model.safetensors'));
    const names = [...tensors.keys()];
    const shardDir = path.join(root, 'shards');
    await mkdir(shardDir, { recursive: true });
    const weightMap: Record<string, string> = {};
    for (const [i, part] of [names.slice(0, 7), names.slice(7)].entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      await writeSafetensors(path.join(shardDir, file), new Map(part.map((n) => [n, tensors.get(n)!])));
      behaviour.files.set(file, await readFile(path.join(shardDir, file)));
      for (const n of part) weightMap[n] = file;
    }
    behaviour.files.delete('model.safetensors');
    behaviour.files.set('model.safetensors.index.json', Buffer.from(JSON.stringify({ metadata: {}, weight_map: weightMap })));
    const out = freshOut();
    const checkpoint = await pull(out);
    expect(Array.from(checkpoint.tensors.get('ln_f.bias')!.data)).toEqual(Array.from(tensors.get('ln_f.bias')!.data));
    await expectSameFiles(out);
  });

  test('a sharded BF16 Mistral checkpoint with generation_config.json is fetched, read as its family, and ends on every EOS id', async () => {
    const source = path.join(root, 'mistral-source');
    const config = {
      architectures: ['MistralForCausalLM'],
      model_type: 'mistral',
      vocab_size: 12,
      hidden_size: 8,
      intermediate_size: 16,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      num_key_value_heads: 1,
      max_position_embeddings: 16,
      sliding_window: 4,
      bos_token_id: 1,
      eos_token_id: 11,
    };
    const written = await writeRandomLlamaCheckpoint(source, config, 5, { shards: 2, dtype: 'BF16' });
    behaviour.files = new Map();
    for (const name of await readdir(source)) behaviour.files.set(name, await readFile(path.join(source, name)));
    behaviour.files.set('tokenizer.json', Buffer.from(JSON.stringify(TOKENIZER.tokenizerJson)));
    behaviour.files.set('tokenizer_config.json', Buffer.from(JSON.stringify(TOKENIZER.tokenizerConfigJson)));
    behaviour.files.set('generation_config.json', Buffer.from(JSON.stringify({ bos_token_id: 1, eos_token_id: [11, 10] })));
    const out = freshOut();
    const checkpoint = await pull(out);
    expect(checkpoint.model).toMatchObject({ family: 'llama', architecture: 'MistralForCausalLM' });
    expect(checkpoint.model.shape).toMatchObject({ kvHeads: 1, headDim: 4, slidingWindow: 4, eosTokenIds: [11, 10] });
    expect(Array.from(checkpoint.tensors.get('model.layers.1.mlp.down_proj.weight')!.data)).toEqual(Array.from(written.get('model.layers.1.mlp.down_proj.weight')!.data));
    expect(seen.map((r) => r.url.slice(`/${REPO}/resolve/main/`.length))).toEqual(
      expect.arrayContaining(['model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'generation_config.json']),
    );
    await expectSameFiles(out);
  });

  test('an existing out is kept unless forced', async () => {
    const out = freshOut();
    await mkdir(out);
    await writeFile(path.join(out, 'keep.txt'), 'x');
    await expect(pull(out)).rejects.toThrow('exists and is not empty; pass --force');
    expect(seen).toHaveLength(0);
    await hubDownload({ repo: REPO, revision: 'main', out, endpoint, force: true });
    await expect(stat(path.join(out, 'keep.txt'))).rejects.toThrow('ENOENT');
  });

  describe('model-pull CLI', () => {
    const run = async (argv: string[], env: NodeJS.ProcessEnv = { HF_ENDPOINT: endpoint }) => {
      let stdout = '';
      let stderr = '';
      const code = await runModelPullCli(argv, env, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
      return { code, stdout, stderr };
    };

    test.each([
      [[], "missing required argument 'repo'"],
      [['a/b', 'c/d'], "unexpected argument 'c/d'"],
      [['../etc'], "repository '../etc' is not a Hub id"],
      [['a/b/c'], "repository 'a/b/c' is not a Hub id"],
      [[REPO, '--revision', ''], "--revision: '' is not a branch, tag or commit"],
      [[REPO, '--bogus'], "unknown option '--bogus'"],
      [[REPO, '--revison', 'v1'], "unknown option '--revison' (Did you mean --revision?)"],
    ])('%j exits 2 with one line and creates nothing', async (args, message) => {
      const out = freshOut();
      const result = await run([...args, '--out', out]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(message);
      expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
      await expect(stat(out)).rejects.toThrow('ENOENT');
      await expect(stat(`${out}.download`)).rejects.toThrow('ENOENT');
    });

    test('an --out folder that is not empty exits 2 naming the flag and stays as it was', async () => {
      const out = freshOut();
      await mkdir(out, { recursive: true });
      await writeFile(path.join(out, 'keep.txt'), 'mine');
      const result = await run([REPO, '--out', out], { HF_ENDPOINT: endpoint });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/--out: .* exists and is not empty; pass --force to replace it/);
      expect(await readdir(out)).toEqual(['keep.txt']);
      expect(seen).toHaveLength(0);
    });

    test('a bad HF_ENDPOINT exits 2', async () => {
      const result = await run([REPO, '--out', freshOut()], { HF_ENDPOINT: 'ftp://x' });
      expect(result.code).toBe(2);
      expect(result.stderr).toContain("HF_ENDPOINT: 'ftp://x' is not an http(s) URL");
    });

    test('pulls from HF_ENDPOINT with HF_TOKEN and prints the files', async () => {
      const out = freshOut();
      const result = await run([REPO, '--out', out], { HF_ENDPOINT: endpoint, HF_TOKEN: 't0k' });
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`pulled ${REPO}@main into ${out}`);
      expect(result.stdout).toContain('model.safetensors');
      expect(seen.every((r) => r.authorization === 'Bearer t0k')).toBe(true);
    });

    test('--progress prints, per downloaded file, a line with its bytes done / total and the rate; without it stderr stays empty', async () => {
      const result = await run([REPO, '--out', freshOut(), '--progress']);
      expect(result.code).toBe(0);
      const lines = result.stderr.trimEnd().split('\n');
      expect(lines.map((line) => line.split(' ')[1])).toEqual(['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors']);
      for (const line of lines) expect(line).toMatch(/^model-pull: \S+ ([\d.]+ [KMG]?i?B) \/ \1 \(100%\)(, [\d.]+ [KMG]?i?B\/s)?, done in \d+\.\d s$/);
      const weightBytes = (single.get('model.safetensors') as Buffer).length;
      const size = weightBytes < 1024 ** 2 ? `${(weightBytes / 1024).toFixed(1)} KiB` : `${(weightBytes / 1024 ** 2).toFixed(1)} MiB`;
      expect(lines[3]).toContain(`model.safetensors ${size} / ${size} (100%)`);
      expect((await run([REPO, '--out', freshOut()])).stderr).toBe('');
    });

    test('a missing remote file exits 1 naming it', async () => {
      behaviour.files.delete('config.json');
      const result = await run([REPO, '--out', freshOut()]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('model-pull: config.json: not found at');
    });
  });
});
