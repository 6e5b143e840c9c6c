/**
 * Jest's node environment runs each test file in its own realm, but onnxruntime-node's addon
 * creates output tensors with the typed-array constructors of Node's main realm, so
 * onnxruntime-common's `data instanceof Float32Array` check fails inside a test. Sharing the
 * main realm's typed arrays with the test realm (as jest already does for Uint8Array) fixes it.
 */
const { TestEnvironment } = require('jest-environment-node');

const TYPED_ARRAYS = [
  'Float32Array',
  'Float64Array',
  'Int8Array',
  'Int16Array',
  'Int32Array',
  'Uint16Array',
  'Uint32Array',
  'Uint8ClampedArray',
  'BigInt64Array',
  'BigUint64Array',
];

class OnnxRuntimeEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of TYPED_ARRAYS) this.global[name] = globalThis[name];
  }
}

module.exports = OnnxRuntimeEnvironment;
