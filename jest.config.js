/** @type {import('jest').Config} */
module.exports = {
  // Shares Node's typed-array constructors with each test file: onnxruntime-node checks them.
  testEnvironment: '<rootDir>/tests/support/onnx-runtime-environment.js',
  roots: ['<rootDir>/tests'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { diagnostics: false }] },
  testTimeout: 60_000,
  maxWorkers: 2,
};
