import { UsageError } from '../../shared/errors';
import { parseBenchArgs } from '../../tools/bench-transformers-js';

describe('bench-transformers-js arguments', () => {
  test('defaults: models/default, 1 and 16 streams, 32 new tokens after 12 prompt tokens, all cores, spinning as the bare loop', () => {
    expect(parseBenchArgs([])).toEqual({
      modelDir: 'models/default',
      streams: [1, 16],
      newTokens: 32,
      promptTokens: 12,
      intraOpThreads: 0,
      allowSpinning: true,
      json: false,
    });
  });

  test('reads a stream list, token counts, threads and switches', () => {
    expect(parseBenchArgs(['--model', 'm', '--streams', '4,64', '--tokens', '8', '--prompt-tokens', '3', '--threads', '2', '--no-spinning', '--json'])).toEqual({
      modelDir: 'm',
      streams: [4, 64],
      newTokens: 8,
      promptTokens: 3,
      intraOpThreads: 2,
      allowSpinning: false,
      json: true,
    });
  });

  test.each([
    [['--streams', '0'], /--streams: expected an integer from 1 to 256, got '0'/],
    [['--streams', '1,x'], /--streams: expected an integer from 1 to 256, got 'x'/],
    [['--tokens', '2.5'], /--tokens/],
    [['--model', ' '], /--model: expected a folder path/],
    [['--batch', '4'], /usage: bench-transformers-js/],
  ])('rejects %j with a usage error naming the flag', (argv, message) => {
    expect(() => parseBenchArgs(argv)).toThrow(UsageError);
    expect(() => parseBenchArgs(argv)).toThrow(message);
  });
});
