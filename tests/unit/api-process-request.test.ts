import { status } from '@grpc/grpc-js';
import { parseProcessQuery, parseProcessRequest } from '../../services/api/process-request';
import { ServiceError } from '../../shared/errors';
import { BAD_BODIES } from '../support/api-test-support';

const LIMITS = { maxNewTokens: 512 };

function rejection(body: unknown): ServiceError {
  try {
    parseProcessRequest(body, LIMITS);
  } catch (error) {
    if (error instanceof ServiceError) return error;
    throw error;
  }
  throw new Error(`accepted ${JSON.stringify(body)}`);
}

describe('parseProcessRequest', () => {
  test.each(BAD_BODIES)('rejects %s with INVALID_ARGUMENT naming the field', (_name, body, message) => {
    const error = rejection(body);
    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(error.message.startsWith(message)).toBe(true);
  });

  test('the max_new_tokens ceiling is the configured limit', () => {
    expect(parseProcessRequest({ text: 'a', max_new_tokens: 8 }, { maxNewTokens: 8 }).maxNewTokens).toBe(8);
    expect(() => parseProcessRequest({ text: 'a', max_new_tokens: 9 }, { maxNewTokens: 8 })).toThrow('max_new_tokens: must be an integer between 1 and 8');
  });

  test('fills the documented defaults and leaves unset sampling fields absent (max_new_tokens too: the coordinator fits its default to the context)', () => {
    expect(parseProcessRequest({ text: 'hi' }, LIMITS)).toEqual({
      text: 'hi',
      metadata: {},
      maxNewTokens: undefined,
      temperature: 0,
      topK: undefined,
      topP: undefined,
      repetitionPenalty: undefined,
      seed: undefined,
      stop: [],
      topLogprobs: 0,
      ignoreEos: false,
      priority: 'interactive',
    });
  });

  test('a left-out max_new_tokens stays out whatever the limit: the coordinator lowers its default to the limit and the context (coordinator-parameters.test.ts)', () => {
    expect(parseProcessRequest({ text: 'hi' }, { maxNewTokens: 4 }).maxNewTokens).toBeUndefined();
  });

  test('keeps every valid field, including the extremes of each range', () => {
    const body = {
      text: 'héllo',
      metadata: { user: 'u1', tags: ['a'] },
      max_new_tokens: 512,
      temperature: 0.7,
      top_k: 0,
      top_p: 1,
      repetition_penalty: 1.3,
      seed: 2 ** 32 - 1,
      stop: ['\n', 'END', 'a', 'b'],
      ignore_eos: true,
      priority: 'batch',
    };
    expect(parseProcessRequest(body, LIMITS)).toEqual({
      text: 'héllo',
      metadata: { user: 'u1', tags: ['a'] },
      maxNewTokens: 512,
      temperature: 0.7,
      topK: 0,
      topP: 1,
      repetitionPenalty: 1.3,
      seed: 4294967295,
      stop: ['\n', 'END', 'a', 'b'],
      topLogprobs: 0,
      ignoreEos: true,
      priority: 'batch',
    });
  });
});

describe('parseProcessQuery', () => {
  test('reads numbers from their text, repeated stop parameters as a list, and the same defaults', () => {
    expect(parseProcessQuery({ text: 'hi', max_new_tokens: '8', temperature: '0.5', seed: '3', stop: ['.', '!'], priority: 'batch' }, LIMITS)).toEqual({
      ...parseProcessRequest({ text: 'hi', max_new_tokens: 8, temperature: 0.5, seed: 3, stop: ['.', '!'], priority: 'batch' }, LIMITS),
    });
    expect(parseProcessQuery({ text: 'hi', stop: '.' }, LIMITS).stop).toEqual(['.']);
    expect(parseProcessQuery({ text: 'hi', ignore_eos: 'true' }, LIMITS).ignoreEos).toBe(true);
    expect(parseProcessQuery({ text: 'hi' }, LIMITS)).toEqual(parseProcessRequest({ text: 'hi' }, LIMITS));
  });

  test.each([
    [{ text: 'a', max_new_tokens: 'four' }, 'max_new_tokens: must be an integer between 1 and 512, got "four"'],
    [{ text: 'a', max_new_tokens: '' }, 'max_new_tokens: must be an integer between 1 and 512'],
    [{ text: 'a', temperature: ['1', '2'] }, 'temperature: must be a number >= 0 (0 = greedy), got an array'],
    [{ text: 'a', metadata: '{}' }, 'unknown field: metadata'],
    [{ text: 'a', ignore_eos: 'yes' }, 'ignore_eos: must be a boolean'],
    [{}, 'text: must be a non-empty string'],
  ])('rejects %j naming the field', (query, message) => {
    expect(() => parseProcessQuery(query, LIMITS)).toThrow(message);
  });
});
