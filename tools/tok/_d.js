const {Tokenizer}=require('tokenizers');
(async()=>{
const t=Tokenizer.fromFile('/tmp/tokexp/variants/bytelevel_flags.json');
const e=await t.encode("ﬁ x",null,{addSpecialTokens:false}); console.log(e.getIds(), e.getTokens());
for (const id of e.getIds()) console.log(id, JSON.stringify(t.idToToken(id)), JSON.stringify(await t.decode([id],false)));
const m=Tokenizer.fromFile('/tmp/tokexp/variants/metaspace_split.json');
const e2=await m.encode("90",null,{addSpecialTokens:false}); console.log(e2.getIds(), e2.getTokens());
const e3=await m.encode("12345678901234567890",null,{addSpecialTokens:false}); console.log(e3.getIds().join(' '), e3.getTokens().join(' '));
})();
