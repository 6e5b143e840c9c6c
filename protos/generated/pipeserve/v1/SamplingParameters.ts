// Original file: protos/node.proto


export interface SamplingParameters {
  'temperature'?: (number | string);
  'top_k'?: (number);
  'top_p'?: (number | string);
  'repetition_penalty'?: (number | string);
  'seed'?: (number);
  'top_logprobs'?: (number);
}

export interface SamplingParameters__Output {
  'temperature': (number);
  'top_k': (number);
  'top_p': (number);
  'repetition_penalty': (number);
  'seed': (number);
  'top_logprobs': (number);
}
