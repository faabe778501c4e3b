// SDAPI (stable-diffusion.cpp's server) request shapes for the Images tab: the LoRA list the
// upstream offers, the LoRAs the user picked with their multipliers, and the txt2img body.
//
// As in llama-swap, picked LoRAs travel in the body's `lora` list as `{path, multiplier}`; the
// prompt is sent as typed (no `<lora:…>` tags are written into it).

/**
 * The upstream's `/sdapi/v1/loras` answer as `[{name, path}]`: a list of `{name, path}` objects
 * (either field may be missing) or of plain names, bare or under `loras`. Blank and repeated
 * paths are dropped; anything else gives an empty list.
 */
export function parseLoras(d) {
  const arr = Array.isArray(d) ? d : Array.isArray(d?.loras) ? d.loras : [];
  const out = [];
  const seen = new Set();
  for (const item of arr) {
    const path = String((typeof item === "string" ? item : item?.path || item?.name) ?? "").trim();
    if (!path || seen.has(path)) continue;
    seen.add(path);
    const name = typeof item === "string" ? item : String(item.name || path);
    out.push({ name, path });
  }
  return out;
}

/** A multiplier from user input: a finite number, else 1. */
export function loraMultiplier(value) {
  const n = typeof value === "number" ? value : Number.parseFloat(String(value));
  return Number.isFinite(n) ? n : 1;
}

/** Pick a LoRA: appended, or, when already picked, given the new multiplier in its place. */
export function addLora(picked, lora, multiplier = 1) {
  const entry = { name: lora.name, path: lora.path, multiplier: loraMultiplier(multiplier) };
  const i = picked.findIndex((p) => p.path === lora.path);
  if (i < 0) return [...picked, entry];
  return picked.map((p, j) => (j === i ? entry : p));
}

/** Drop a picked LoRA by path. */
export function removeLora(picked, path) {
  return picked.filter((p) => p.path !== path);
}

/** The `/sdapi/v1/txt2img` body; `lora` only when some are picked, as llama-swap sends it. */
export function txt2imgBody({ model, prompt, negative, width, height, steps, cfg, seed, batch, sampler, scheduler, loras }) {
  const body = {
    model,
    prompt,
    negative_prompt: negative || undefined,
    width,
    height,
    steps,
    cfg_scale: cfg,
    seed,
    batch_size: batch,
    sampler_name: sampler || undefined,
    scheduler: scheduler && scheduler !== "auto" ? scheduler : undefined,
  };
  if (loras?.length) body.lora = loras.map((l) => ({ path: l.path, multiplier: loraMultiplier(l.multiplier) }));
  return body;
}
