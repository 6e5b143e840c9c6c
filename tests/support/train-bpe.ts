/**
 * Byte-pair-encoding training, as in Sennrich et al. and Hugging Face's BpeTrainer, small and
 * deterministic: words are given as their symbols with a count; each round merges the most
 * frequent adjacent pair (ties go to the pair that sorts first), `merges` rounds or until no pair
 * is left. Returns the merges in order, each as [left, right].
 */
export function trainBpe(words: ReadonlyMap<string, { readonly symbols: readonly string[]; readonly count: number }>, merges: number): [string, string][] {
  const pieces = [...words.values()].map((word) => ({ symbols: [...word.symbols], count: word.count }));
  const learned: [string, string][] = [];
  while (learned.length < merges) {
    const counts = new Map<string, { left: string; right: string; count: number }>();
    for (const word of pieces) {
      for (let i = 0; i + 1 < word.symbols.length; i++) {
        const key = `${word.symbols[i]}\u0000${word.symbols[i + 1]}`;
        const entry = counts.get(key) ?? { left: word.symbols[i], right: word.symbols[i + 1], count: 0 };
        entry.count += word.count;
        counts.set(key, entry);
      }
    }
    let best: { key: string; left: string; right: string; count: number } | undefined;
    for (const [key, entry] of counts) {
      if (best === undefined || entry.count > best.count || (entry.count === best.count && key < best.key)) best = { key, ...entry };
    }
    if (best === undefined) break;
    learned.push([best.left, best.right]);
    for (const word of pieces) {
      const merged: string[] = [];
      for (let i = 0; i < word.symbols.length; i++) {
        if (i + 1 < word.symbols.length && word.symbols[i] === best.left && word.symbols[i + 1] === best.right) {
          merged.push(best.left + best.right);
          i++;
        } else {
          merged.push(word.symbols[i]);
        }
      }
      word.symbols = merged;
    }
  }
  return learned;
}
