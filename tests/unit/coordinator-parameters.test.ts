import { status } from '@grpc/grpc-js';
import { fitDefaultLength, parseParameters } from '../../services/coordinator/coordinator-service';
import { DEFAULT_LIMITS } from '../../shared/config';
import { ServiceError } from '../../shared/errors';
import { DEFAULT_GENERATION_CONFIG } from '../../shared/generation-config';

describe('fitDefaultLength', () => {
  const shape = { contextLength: 100 } as Parameters<typeof fitDefaultLength>[2];
  const request = (promptLength: number, maxNewTokens?: number) =>
    ({ prompt_token_ids: new Array(promptLength).fill(1), parameters: { stop: [], top_logprobs: 0, ignore_eos: false, ...(maxNewTokens === undefined ? {} : { max_new_tokens: maxNewTokens }) } }) as unknown as Parameters<typeof fitDefaultLength>[1];
  const sampling = (parameters: { max_new_tokens?: number }) => parseParameters({ stop: [], top_logprobs: 0, ignore_eos: false, ...parameters }, DEFAULT_LIMITS);

  it('a left-out max_new_tokens is lowered to what the context leaves after the prompt', () => {
    expect(fitDefaultLength(sampling({}), request(90), shape).maxNewTokens).toBe(10);
    expect(fitDefaultLength(sampling({}), request(10), shape).maxNewTokens).toBe(DEFAULT_GENERATION_CONFIG.maxNewTokens);
  });

  it('an explicit max_new_tokens is kept (checkPrompt refuses it when it does not fit), and so is a prompt with no room', () => {
    expect(fitDefaultLength(sampling({ max_new_tokens: 30 }), request(90, 30), shape).maxNewTokens).toBe(30);
    expect(fitDefaultLength(sampling({}), request(100), shape).maxNewTokens).toBe(DEFAULT_GENERATION_CONFIG.maxNewTokens);
  });
});

describe('parseParameters', () => {
  it('an omitted max_new_tokens takes the default when the limit is above it', () => {
    const limits = { ...DEFAULT_LIMITS, maxNewTokens: DEFAULT_GENERATION_CONFIG.maxNewTokens + 100 };
    expect(parseParameters({ stop: [], top_logprobs: 0, ignore_eos: false }, limits).maxNewTokens).toBe(DEFAULT_GENERATION_CONFIG.maxNewTokens);
    expect(parseParameters(null, limits).maxNewTokens).toBe(DEFAULT_GENERATION_CONFIG.maxNewTokens);
  });

  it('an omitted max_new_tokens is lowered to a configured limit below the default instead of being rejected', () => {
    const limits = { ...DEFAULT_LIMITS, maxNewTokens: 8 };
    expect(DEFAULT_GENERATION_CONFIG.maxNewTokens).toBeGreaterThan(8);
    expect(parseParameters({ stop: [], top_logprobs: 0, ignore_eos: false }, limits).maxNewTokens).toBe(8);
    expect(parseParameters(null, limits).maxNewTokens).toBe(8);
  });

  it('an explicit max_new_tokens above the limit is still rejected, naming the field', () => {
    const limits = { ...DEFAULT_LIMITS, maxNewTokens: 8 };
    let thrown: unknown;
    try {
      parseParameters({ max_new_tokens: 9, stop: [], top_logprobs: 0, ignore_eos: false }, limits);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ServiceError);
    expect((thrown as ServiceError).code).toBe(status.INVALID_ARGUMENT);
    expect((thrown as ServiceError).message).toMatch(/parameters\.max_new_tokens/);
  });
});
