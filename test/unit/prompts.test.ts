// Prompt templates, per-class ensembling (checked against numpy on the same features) and the
// learned / hand-crafted "no" prompt variants (checked end to end against PyTorch).
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import { ClipnModel, promptWeights } from '../../extension/engine/encoder';
import {
  checkTemplates,
  classFeatures,
  classPrompts,
  defaultTemplates,
  ensembleByClass,
  EXAMPLE_NO_TEMPLATES,
  fillTemplate,
  handcraftedAblation,
  IMAGENET_TEMPLATES,
  learnedPromptAblation,
  TemplateError,
} from '../../extension/engine/prompts';
import { exportMicro } from './helpers/models';
import { runPythonJson } from './helpers/python';
import { maxAbsDiff } from './helpers/arrays';
import { minRowCosine } from '../../extension/engine/vectors';


describe('templates', () => {
  test("CLIP's 80 ImageNet templates, all distinct, all with {}", () => {
    assert.equal(IMAGENET_TEMPLATES.length, 80);
    assert.equal(new Set(IMAGENET_TEMPLATES).size, 80);
    checkTemplates(IMAGENET_TEMPLATES);
    checkTemplates(EXAMPLE_NO_TEMPLATES);
    assert.ok(IMAGENET_TEMPLATES.includes('a photo of a {}.'));
    assert.ok(IMAGENET_TEMPLATES.includes('itap of my {}.'));
  });

  test('a template without {} is an error naming it and the fix', () => {
    assert.throws(() => checkTemplates(['a photo of a {}.', 'a photo.'], 'hand-crafted "no" template'), (err: Error) => {
      assert.ok(err instanceof TemplateError);
      assert.match(err.message, /hand-crafted "no" template "a photo\." has no \{\} where the class name goes/);
      assert.match(err.message, /write it like "a photo of a \{\}\."/);
      return true;
    });
    assert.throws(() => checkTemplates([]), /list is empty/);
  });

  test('filling and ordering', () => {
    assert.equal(fillTemplate('a {} next to a {}.', 'dog'), 'a dog next to a dog.');
    assert.deepEqual(classPrompts(['cat', 'dog'], ['a {}.', 'the {}!']), ['a cat.', 'the cat!', 'a dog.', 'the dog!']);
    assert.deepEqual(defaultTemplates({ templates: ['x {}'] }), ['x {}']);
    assert.equal(defaultTemplates({}), IMAGENET_TEMPLATES);
  });

  test('ensembleByClass equals numpy (normalise, sum, normalise)', () => {
    const c = 3;
    const t = 4;
    const d = 5;
    const feats = Float32Array.from({ length: c * t * d }, (_, i) => Math.sin(i * 1.37) * (1 + (i % 3)));
    const ref = runPythonJson<{ all: number[]; sub: number[] }>(
      `
import json, sys, numpy as np
a = json.load(sys.stdin)
x = np.array(a["x"], dtype=np.float64).reshape(a["c"], a["t"], a["d"])
def ens(x):
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    s = x.sum(1)
    return (s / np.linalg.norm(s, axis=-1, keepdims=True)).ravel().tolist()
print(json.dumps({"all": ens(x), "sub": ens(x[:, [0, 2]])}))
`,
      { x: [...feats], c, t, d },
    );
    assert.ok(maxAbsDiff(ensembleByClass(feats, d, c, t).data, ref.all) < 1e-6);
    assert.ok(maxAbsDiff(ensembleByClass(feats, d, c, t, [0, 2]).data, ref.sub) < 1e-6);
    assert.throws(() => ensembleByClass(feats, d, c, 5), /not 3 classes x 5 templates x 5/);
  });
});

describe('class features on the micro model', () => {
  let model: ClipnModel;
  const classes = ['circle', 'square', 'triangle'];
  const templates = ['a photo of a {}.', 'a drawing of the {}.', 'a {}.'];
  const noPool = ['a photo of no {}.', 'a photo without a {}.'];

  before(async () => {
    model = await ClipnModel.load(exportMicro().folder, { backend: { executionProviders: ['cpu'] } });
  });
  after(async () => {
    await model?.dispose();
  });

  test("the manifest's templates are the model's default", async () => {
    assert.deepEqual(defaultTemplates(model.manifest), ['a photo of a {}.', 'a {}.']);
    const f = await classFeatures(model, classes);
    assert.deepEqual(f.templates, ['a photo of a {}.', 'a {}.']);
    assert.deepEqual(f.yes.dims, [3, model.embedDim]);
    assert.equal(f.provider.yes, 'cpu');
  });

  test('yes/no ensembles equal numpy on the same per-prompt features', async () => {
    const prompts = classPrompts(classes, templates);
    const rawYes = await model.encodeTexts(prompts);
    const rawNo = await model.encodeTextsNo(prompts, promptWeights.mean());
    const f = await classFeatures(model, classes, { templates });
    const ref = runPythonJson<{ yes: number[]; no: number[] }>(
      `
import json, sys, numpy as np
a = json.load(sys.stdin)
def ens(v):
    x = np.array(v, dtype=np.float64).reshape(a["c"], a["t"], a["d"])
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    s = x.sum(1)
    return (s / np.linalg.norm(s, axis=-1, keepdims=True)).ravel().tolist()
print(json.dumps({"yes": ens(a["yes"]), "no": ens(a["no"])}))
`,
      { yes: [...rawYes.data], no: [...rawNo.data], c: classes.length, t: templates.length, d: model.embedDim },
    );
    assert.ok(maxAbsDiff(f.yes.data, ref.yes) < 1e-6);
    assert.ok(maxAbsDiff(f.no.data, ref.no) < 1e-6);
  });

  test('learned prompts (each, mean, leave-one-out) and a hand-crafted pool match PyTorch', async () => {
    const ablation = await learnedPromptAblation(model, classes, { templates });
    const hand = await handcraftedAblation(model, classes, { templates: noPool });
    const viaClass = await classFeatures(model, classes, { templates, no: { kind: 'handcrafted', templates: noPool } });
    const single2 = await classFeatures(model, classes, { templates, no: { kind: 'learned', mix: promptWeights.single(2) } });
    const baseline = await classFeatures(model, classes, { templates, no: { kind: 'handcrafted', templates: noPool, tower: 'yes' } });
    const ref = runPythonJson<Record<string, number[] | number[][]>>(
      `
import json, sys
from pathlib import Path
import numpy as np, torch
from clipn.checkpoint import load_clipn
from clipn.tokenizer import ClipTokenizer
a = json.load(sys.stdin)
model = load_clipn(Path(a["checkpoint"]))
tok = ClipTokenizer(Path(a["merges"]), model.config.text.context_length)
P = model.config.num_prompts
def ens(feats, c, t):
    x = feats.double().numpy().reshape(c, t, -1)
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    s = x.sum(1)
    return (s / np.linalg.norm(s, axis=-1, keepdims=True)).ravel().tolist()
def prompts(tmpls):
    return [t.replace("{}", c) for c in a["classes"] for t in tmpls]
C, T, K = len(a["classes"]), len(a["templates"]), len(a["pool"])
ids = torch.tensor(tok.tokenize(prompts(a["templates"])))
pool_ids = torch.tensor(tok.tokenize(prompts(a["pool"])))
out = {}
with torch.no_grad():
    out["yes"] = ens(model.encode_text(ids), C, T)
    def no(w):
        return ens(model.encode_text_no(ids, w.expand(ids.shape[0], P)), C, T)
    out["mean"] = no(torch.full((1, P), 1.0 / P))
    out["single"] = [no(torch.nn.functional.one_hot(torch.tensor([i]), P).float()) for i in range(P)]
    loo = []
    for i in range(P):
        w = torch.full((1, P), 1.0 / (P - 1)); w[0, i] = 0
        loo.append(no(w))
    out["loo"] = loo
    raw = model.encode_text_no(pool_ids, torch.zeros(pool_ids.shape[0], P))
    out["pool"] = ens(raw, C, K)
    out["alone"] = [ens(raw.reshape(C, K, -1)[:, k], C, 1) for k in range(K)]
    out["baseline"] = ens(model.encode_text(pool_ids), C, K)
print(json.dumps(out))
`,
      {
        checkpoint: exportMicro().checkpoint,
        merges: model.modelFolder.merges,
        classes,
        templates,
        pool: noPool,
      },
    );
    const d = model.embedDim;
    const close = (got: Float32Array, want: unknown, what: string) => {
      const c = minRowCosine(got, want as number[], d);
      assert.ok(c >= 0.9999, `${what}: cosine ${c}`);
    };
    close(ablation.yes.data, ref.yes, 'yes');
    close(ablation.mean.data, ref.mean, 'mean');
    assert.equal(ablation.single.length, model.numPrompts);
    assert.equal(ablation.leaveOneOut.length, model.numPrompts);
    ablation.single.forEach((f, i) => close(f.data, (ref.single as number[][])[i], `single ${i}`));
    ablation.leaveOneOut.forEach((f, i) => close(f.data, (ref.loo as number[][])[i], `leave out ${i}`));
    close(single2.no.data, (ref.single as number[][])[2], 'classFeatures single(2)');
    close(hand.all.data, ref.pool, 'hand-crafted pool');
    close(viaClass.no.data, ref.pool, 'classFeatures hand-crafted');
    hand.alone.forEach((f, k) => close(f.data, (ref.alone as number[][])[k], `hand-crafted ${k} alone`));
    close(baseline.no.data, ref.baseline, 'hand-crafted through the yes tower');
    // Two-template pool: leaving one out is the other alone.
    assert.ok(maxAbsDiff(hand.leaveOneOut[0].data, hand.alone[1].data) < 1e-6);
    // The prompts matter: single prompts differ from each other and from the mean.
    assert.ok(maxAbsDiff(ablation.single[0].data, ablation.single[1].data) > 1e-3);
  });

  test('bad prompt inputs are named', async () => {
    await assert.rejects(
      classFeatures(model, classes, { no: { kind: 'handcrafted', templates: ['a photo of no {}.', 'nothing here'] } }),
      /hand-crafted "no" template "nothing here" has no \{\}/,
    );
    await assert.rejects(classFeatures(model, classes, { templates: ['a photo'] }), /template "a photo" has no \{\}/);
    await assert.rejects(classFeatures(model, []), /class list is empty/);
    await assert.rejects(classFeatures(model, ['cat', ' ']), /class 1 has an empty name/);
    await assert.rejects(
      classFeatures(model, classes, { no: { kind: 'learned', mix: promptWeights.single(7) } }),
      /learned "no" prompt 7 does not exist: this model has 4/,
    );
  });
});
