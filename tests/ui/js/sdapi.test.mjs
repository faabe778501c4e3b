import assert from "node:assert/strict";
import { test } from "node:test";
import { addLora, loraMultiplier, parseLoras, removeLora, txt2imgBody } from "../../../ui/js/lib/sdapi.js";

test("the upstream's LoRA list is read in each shape it comes in", () => {
  const objs = [{ name: "detail", path: "loras/detail.safetensors" }, { path: "style.safetensors" }];
  assert.deepEqual(parseLoras(objs), [
    { name: "detail", path: "loras/detail.safetensors" },
    { name: "style.safetensors", path: "style.safetensors" },
  ]);
  assert.deepEqual(parseLoras({ loras: ["a", "a", " ", "b"] }), [
    { name: "a", path: "a" },
    { name: "b", path: "b" },
  ]);
  assert.deepEqual(parseLoras({ error: "no lora dir" }), []);
  assert.deepEqual(parseLoras(null), []);
});

test("picking a LoRA twice updates its multiplier in place; removing drops it", () => {
  const a = { name: "a", path: "a.safetensors" };
  const b = { name: "b", path: "b.safetensors" };
  let picked = addLora([], a, "0.8");
  picked = addLora(picked, b);
  picked = addLora(picked, a, -0.5);
  assert.deepEqual(picked, [
    { name: "a", path: "a.safetensors", multiplier: -0.5 },
    { name: "b", path: "b.safetensors", multiplier: 1 },
  ]);
  assert.deepEqual(removeLora(picked, "a.safetensors"), [{ name: "b", path: "b.safetensors", multiplier: 1 }]);
  assert.equal(loraMultiplier("x"), 1);
  assert.equal(loraMultiplier(""), 1);
  assert.equal(loraMultiplier("1.25"), 1.25);
});

test("the txt2img body carries the picked LoRAs as {path, multiplier} and leaves the prompt alone", () => {
  const base = { model: "sd", prompt: "a llama", negative: "", width: 512, height: 512, steps: 20, cfg: 7, seed: -1, batch: 2, sampler: "euler_a", scheduler: "auto" };
  const plain = txt2imgBody({ ...base, loras: [] });
  assert.equal(plain.lora, undefined);
  assert.equal(plain.scheduler, undefined); // "auto" lets the server choose
  assert.equal(plain.negative_prompt, undefined);
  assert.equal(plain.batch_size, 2);
  const withLora = txt2imgBody({ ...base, scheduler: "karras", loras: [{ name: "a", path: "a.safetensors", multiplier: 0.7 }] });
  assert.deepEqual(withLora.lora, [{ path: "a.safetensors", multiplier: 0.7 }]);
  assert.equal(withLora.prompt, "a llama");
  assert.equal(withLora.scheduler, "karras");
});
