import { jsonNestingDepth } from '../../services/api/json-depth';

const depthOf = (text: string, limit?: number) => jsonNestingDepth(Buffer.from(text, 'utf8'), limit);

describe('jsonNestingDepth', () => {
  test.each([
    ['1', 0],
    ['"text"', 0],
    ['{}', 1],
    ['[]', 1],
    ['{"a":[1,{"b":[]}]}', 4],
    ['[[],[[]],[]]', 3],
    ['{"a":{},"b":{"c":{}}}', 3],
  ])('%s nests %d deep, as JSON.parse reads it', (text, depth) => {
    expect(depthOf(text)).toBe(depth);
    expect(nestingOfValue(JSON.parse(text))).toBe(depth);
  });

  test('brackets inside strings, escaped quotes and escaped backslashes do not count', () => {
    const text = JSON.stringify({ a: '{[{[', b: 'say \\"{\\"', c: '\\', d: ['"]]]}}}"'] });
    expect(depthOf(text)).toBe(2);
    expect(nestingOfValue(JSON.parse(text))).toBe(2);
  });

  test('stops reading as soon as the limit is passed', () => {
    const deep = '['.repeat(1_000_000);
    expect(depthOf(deep, 32)).toBe(33);
    expect(depthOf('[[[]]]', 3)).toBe(3);
  });
});

/** The nesting of a parsed value, computed from the value (independently of the byte scanner). */
function nestingOfValue(value: unknown): number {
  if (Array.isArray(value)) return 1 + Math.max(0, ...value.map(nestingOfValue));
  if (typeof value === 'object' && value !== null) return 1 + Math.max(0, ...Object.values(value).map(nestingOfValue));
  return 0;
}
