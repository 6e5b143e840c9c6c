import { StopStringMatcher } from '../../services/coordinator/stop-string-matcher';

describe('StopStringMatcher', () => {
  it('cuts the text before the first stop string, even when it spans pieces', () => {
    const matcher = new StopStringMatcher(['END']);
    const shown = ['Hello E', 'N', 'D and more'].map((p) => matcher.push(p)).join('') + matcher.finish();
    expect(shown).toBe('Hello ');
    expect(matcher.fullText).toBe('Hello ');
    expect(matcher.stopped).toBe(true);
  });

  it('never shows a partial stop string that later turns out to be one', () => {
    const matcher = new StopStringMatcher(['\n\n']);
    expect(matcher.push('a\n')).toBe('a');
    expect(matcher.push('\nb')).toBe('');
    expect(matcher.fullText).toBe('a');
  });

  it('releases held-back text when it is not a stop string after all', () => {
    const matcher = new StopStringMatcher(['STOP']);
    const shown = [matcher.push('ab S'), matcher.push('T'), matcher.push('x'), matcher.finish()].join('');
    expect(shown).toBe('ab STx');
    expect(matcher.stopped).toBe(false);
  });

  it('picks the earliest of several stop strings', () => {
    const matcher = new StopStringMatcher(['zz', 'b']);
    matcher.push('a b zz');
    expect(matcher.fullText).toBe('a ');
  });

  it('with no stop strings shows everything at once', () => {
    const matcher = new StopStringMatcher([]);
    expect(matcher.push('abc')).toBe('abc');
    expect(matcher.finish()).toBe('');
  });

  it('never cuts a held-back piece between the two halves of a surrogate pair', () => {
    const matcher = new StopStringMatcher(['xyz']);
    const pieces = [matcher.push('hi 😀a'), matcher.push('b'), matcher.finish()];
    for (const piece of pieces) {
      expect(Buffer.from(piece, 'utf8').toString('utf8')).toBe(piece);
    }
    expect(pieces[0]).toBe('hi ');
    expect(pieces.join('')).toBe('hi 😀ab');
  });
});
