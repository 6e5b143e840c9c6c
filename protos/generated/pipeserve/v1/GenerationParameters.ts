// Original file: protos/coordinator.proto


export interface GenerationParameters {
  'max_new_tokens'?: (number);
  'temperature'?: (number | string);
  'top_k'?: (number);
  'top_p'?: (number | string);
  'repetition_penalty'?: (number | string);
  'seed'?: (number);
  'stop'?: (string)[];
  'top_logprobs'?: (number);
  'ignore_eos'?: (boolean);
  '_max_new_tokens'?: "max_new_tokens";
  '_temperature'?: "temperature";
  '_top_k'?: "top_k";
  '_top_p'?: "top_p";
  '_repetition_penalty'?: "repetition_penalty";
  '_seed'?: "seed";
}

export interface GenerationParameters__Output {
  'max_new_tokens'?: (number);
  'temperature'?: (number);
  'top_k'?: (number);
  'top_p'?: (number);
  'repetition_penalty'?: (number);
  'seed'?: (number);
  'stop': (string)[];
  'top_logprobs': (number);
  'ignore_eos': (boolean);
  '_max_new_tokens'?: "max_new_tokens";
  '_temperature'?: "temperature";
  '_top_k'?: "top_k";
  '_top_p'?: "top_p";
  '_repetition_penalty'?: "repetition_penalty";
  '_seed'?: "seed";
}
