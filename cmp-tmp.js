const { buildGpt2TokenizerFiles } = require('./dist/tools/init/gpt2-tokenizer-files');
const { randomUnicodeStrings } = require('./dist/tests/support/unicode-samples');
const { Tokenizer } = require('tokenizers');
const { Tokenizer: JsTok } = require('@huggingface/tokenizers');
const g = require('gpt-3-encoder');
(async () => {
  const f = buildGpt2TokenizerFiles();
  const rust = Tokenizer.fromString(JSON.stringify({ ...f.tokenizerJson, added_tokens: [] }));
  const js = new JsTok({ ...f.tokenizerJson, added_tokens: [] }, f.tokenizerConfigJson);
  let dg = 0, dj = 0;
  const texts = randomUnicodeStrings(7, 1000);
  for (const t of texts) {
    const r = (await rust.encode(t, null, { addSpecialTokens: false })).getIds();
    const j = js.encode(t, { add_special_tokens: false }).ids;
    let ge; try { ge = g.encode(t); } catch (e) { ge = 'ERR ' + e.message; }
    if (JSON.stringify(r) !== JSON.stringify(ge)) { if (dg++ < 3) console.log('gpt3enc differs', JSON.stringify(t)); }
    if (JSON.stringify(r) !== JSON.stringify(j)) { if (dj++ < 3) console.log('tokenizers.js differs', JSON.stringify(t)); }
  }
  console.log('differ gpt-3-encoder', dg, 'tokenizers.js', dj, 'of', texts.length);
})();
