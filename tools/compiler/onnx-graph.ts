/**
 * A small ONNX graph builder: typed inputs and outputs with symbolic dims, nodes with attributes,
 * and initializers that keep a reference to the caller's typed array (never a copy), so a
 * 500 MB checkpoint is only ever held once. `writeOnnxModel` turns it into files.
 */

export type ElementType = 'float32' | 'int64' | 'int32' | 'uint8' | 'bool';

/** A fixed size, or a symbolic name such as 'batch', 'seq', 'past', 'total'. */
export type Dim = number | string;

export type InitializerData = Float32Array | BigInt64Array | Int32Array | Uint8Array;

export type Attribute =
  | { readonly type: 'int'; readonly value: number }
  | { readonly type: 'float'; readonly value: number }
  | { readonly type: 'ints'; readonly value: readonly number[] }
  | { readonly type: 'string'; readonly value: string };

/** Attribute constructors: ONNX distinguishes int from float attributes, JavaScript does not. */
export const attr = {
  int: (value: number): Attribute => ({ type: 'int', value }),
  float: (value: number): Attribute => ({ type: 'float', value }),
  ints: (value: readonly number[]): Attribute => ({ type: 'ints', value }),
  string: (value: string): Attribute => ({ type: 'string', value }),
};

export interface ValueInfo {
  readonly name: string;
  readonly elementType: ElementType;
  readonly dims: readonly Dim[];
}

export interface GraphNode {
  readonly name: string;
  readonly opType: string;
  readonly domain: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attributes: Readonly<Record<string, Attribute>>;
}

export interface Initializer {
  readonly name: string;
  readonly elementType: Exclude<ElementType, 'bool'>;
  readonly dims: readonly number[];
  readonly data: InitializerData;
}

export interface NodeOptions {
  /** Output count (names are generated) or explicit output names; '' skips an optional output. */
  readonly outputs?: number | readonly string[];
  readonly attributes?: Readonly<Record<string, Attribute>>;
  /** '' is the default ai.onnx domain; 'com.microsoft' for onnxruntime contrib ops. */
  readonly domain?: string;
}

export const MICROSOFT_DOMAIN = 'com.microsoft';

export class OnnxGraph {
  readonly inputs: ValueInfo[] = [];
  readonly outputs: ValueInfo[] = [];
  readonly nodes: GraphNode[] = [];
  readonly initializers: Initializer[] = [];
  private readonly names = new Set<string>();
  private readonly domains = new Set<string>();
  private counter = 0;
  private prefix = '';

  constructor(readonly name: string) {}

  /** Domains used by the nodes so far ('' = ai.onnx), for the model's opset imports. */
  get usedDomains(): readonly string[] {
    return [...this.domains];
  }

  addInput(name: string, elementType: ElementType, dims: readonly Dim[]): string {
    this.claim(name);
    this.inputs.push({ name, elementType, dims: [...dims] });
    return name;
  }

  /** Declares an existing value (a node output or an input) as a graph output. */
  addOutput(name: string, elementType: ElementType, dims: readonly Dim[]): void {
    if (!this.names.has(name)) throw new Error(`graph ${this.name}: output ${name} is not produced by any node`);
    this.outputs.push({ name, elementType, dims: [...dims] });
  }

  addInitializer(name: string, elementType: Initializer['elementType'], dims: readonly number[], data: InitializerData): string {
    const expected = dims.reduce((n, d) => n * d, 1);
    if (data.length !== expected) {
      throw new Error(`initializer ${name}: dims [${dims.join(', ')}] need ${expected} values, got ${data.length}`);
    }
    this.claim(name);
    this.initializers.push({ name, elementType, dims: [...dims], data });
    return name;
  }

  /** A float32 weight, kept by reference. */
  addWeight(name: string, weight: { readonly dims: readonly number[]; readonly data: Float32Array }): string {
    return this.addInitializer(name, 'float32', weight.dims, weight.data);
  }

  /** A float32 scalar constant. */
  scalar(value: number): string {
    return this.addInitializer(this.freshName('const'), 'float32', [], Float32Array.of(value));
  }

  /** A float32 constant tensor (small tables such as rotary caches are weights instead). */
  floats(values: readonly number[], dims: readonly number[] = [values.length]): string {
    return this.addInitializer(this.freshName('const'), 'float32', dims, Float32Array.from(values));
  }

  /** An int64 constant: a scalar when `dims` is [], otherwise a 1-D tensor by default. */
  int64s(values: readonly number[], dims: readonly number[] = [values.length]): string {
    return this.addInitializer(this.freshName('const'), 'int64', dims, BigInt64Array.from(values, (v) => BigInt(v)));
  }

  /** Runs `build` with generated names prefixed by `scope/`, so a graph dump reads like the model. */
  inScope<T>(scope: string, build: () => T): T {
    const saved = this.prefix;
    this.prefix = `${saved}${scope}/`;
    try {
      return build();
    } finally {
      this.prefix = saved;
    }
  }

  /** Adds a node and returns its output names. */
  node(opType: string, inputs: readonly string[], options: NodeOptions = {}): string[] {
    const outputs =
      typeof options.outputs === 'object'
        ? [...options.outputs]
        : Array.from({ length: options.outputs ?? 1 }, () => this.freshName(opType));
    for (const input of inputs) {
      if (input !== '' && !this.names.has(input)) throw new Error(`graph ${this.name}: ${opType} reads unknown value ${input}`);
    }
    for (const output of outputs) if (output !== '') this.claim(output);
    const domain = options.domain ?? '';
    this.domains.add(domain);
    this.nodes.push({
      name: `${this.prefix}${opType}_${this.nodes.length}`,
      opType,
      domain,
      inputs: [...inputs],
      outputs,
      attributes: options.attributes ?? {},
    });
    return outputs;
  }

  /** A node with exactly one output, which is returned. */
  op(opType: string, inputs: readonly string[], attributes: Readonly<Record<string, Attribute>> = {}, domain = ''): string {
    const [output] = this.node(opType, inputs, { attributes, domain });
    return output;
  }

  /** A name no value uses yet, for an output among explicitly named ones. */
  freshName(stem: string): string {
    let name: string;
    do name = `${this.prefix}${stem}_${this.counter++}`;
    while (this.names.has(name));
    return name;
  }

  private claim(name: string): void {
    if (this.names.has(name)) throw new Error(`graph ${this.name}: the name ${name} is used twice`);
    this.names.add(name);
  }
}
