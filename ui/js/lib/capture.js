// Capture bodies: base64 → bytes/text, content sniffing, and the "Chat" view of an SSE stream.

import { SSEParser } from "./sse.js";

/** Decode base64 to a UTF-8 string (invalid sequences replaced). Null stays null. */
export function base64ToText(b64) {
  if (b64 == null) return null;
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new TextDecoder("utf-8", { fatal: false }).decode(bytes);
}

/** Case-insensitive header lookup in a single-valued header map. */
export function headerValue(headers, name) {
  if (!headers) return "";
  const want = name.toLowerCase();
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() === want) return v;
  return "";
}

/** Pretty JSON when the text parses, else null. */
export function prettyJson(text) {
  if (text == null) return null;
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return null;
  }
}

/** How a captured body should be shown: "image" | "sse" | "json" | "text" | "binary" | "empty". */
export function bodyKind(contentType, b64) {
  if (b64 == null || b64 === "") return "empty";
  const ct = (contentType || "").toLowerCase();
  if (ct.startsWith("image/")) return "image";
  if (ct.includes("text/event-stream")) return "sse";
  if (ct.includes("json")) return "json";
  if (ct.startsWith("text/") || ct === "") {
    const text = base64ToText(b64);
    // biome-ignore lint: NUL detection
    return /\u0000/.test(text) ? "binary" : prettyJson(text) != null ? "json" : "text";
  }
  if (ct.startsWith("audio/") || ct.includes("octet-stream")) return "binary";
  return "text";
}

/**
 * Stitch an SSE response into `{reasoning, content}` (OpenAI chat deltas incl.
 * `reasoning_content`/`reasoning`, Anthropic text/thinking deltas, Responses text deltas).
 */
export function stitchSseChat(text) {
  const parser = new SSEParser();
  const events = [...parser.push(text || ""), ...parser.end()];
  let reasoning = "";
  let content = "";
  for (const ev of events) {
    if (!ev.data || ev.data.trim() === "[DONE]") continue;
    let obj;
    try {
      obj = JSON.parse(ev.data);
    } catch {
      continue;
    }
    const d = obj?.choices?.[0]?.delta;
    if (d) {
      reasoning += d.reasoning_content || d.reasoning || "";
      content += d.content || "";
    } else if (obj?.type === "content_block_delta") {
      if (obj.delta?.type === "thinking_delta") reasoning += obj.delta.thinking || "";
      else content += obj.delta?.text || "";
    } else if (obj?.type === "response.output_text.delta") content += obj.delta || "";
    else if (typeof obj?.type === "string" && obj.type.startsWith("response.reasoning")) {
      if (obj.type.endsWith(".delta")) reasoning += obj.delta || "";
    }
  }
  return { reasoning, content };
}
