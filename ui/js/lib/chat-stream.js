// Chat requests and their streams for the three endpoints the Playground speaks:
// OpenAI chat completions, Anthropic messages and OpenAI responses.

export const ENDPOINTS = {
  chat: "/v1/chat/completions",
  messages: "/v1/messages",
  responses: "/v1/responses",
};

const RULE = "\u2501\u2501\u2501\u2501\u2501";

function splitDataUrl(url) {
  const m = /^data:([^;,]+);base64,(.*)$/s.exec(url || "");
  return m ? { mediaType: m[1], data: m[2] } : null;
}

/**
 * The request body for `endpoint` ("chat" | "messages" | "responses"). `messages` are
 * `{role, content, images?: [dataURL]}`; opts = {model, system, temperature, maxTokens}.
 */
export function buildChatBody(endpoint, messages, opts) {
  const { model, system, temperature, maxTokens } = opts;
  const msgs = messages.filter((m) => m.role === "user" || m.role === "assistant");
  if (endpoint === "messages") {
    const body = {
      model,
      stream: true,
      max_tokens: maxTokens || 4096,
      messages: msgs.map((m) => ({
        role: m.role,
        content: [
          ...(m.images || [])
            .map(splitDataUrl)
            .filter(Boolean)
            .map((img) => ({
              type: "image",
              source: { type: "base64", media_type: img.mediaType, data: img.data },
            })),
          { type: "text", text: m.content || "" },
        ],
      })),
    };
    if (system) body.system = system;
    if (temperature != null) body.temperature = temperature;
    return body;
  }
  if (endpoint === "responses") {
    const body = {
      model,
      stream: true,
      input: msgs.map((m) => ({
        role: m.role,
        content: [
          {
            type: m.role === "assistant" ? "output_text" : "input_text",
            text: m.content || "",
          },
          ...(m.role === "user" ? m.images || [] : []).map((url) => ({
            type: "input_image",
            image_url: url,
          })),
        ],
      })),
    };
    if (system) body.instructions = system;
    if (maxTokens) body.max_output_tokens = maxTokens;
    if (temperature != null) body.temperature = temperature;
    return body;
  }
  const out = [];
  if (system) out.push({ role: "system", content: system });
  for (const m of msgs) {
    if (m.images?.length && m.role === "user") {
      out.push({
        role: m.role,
        content: [
          { type: "text", text: m.content || "" },
          ...m.images.map((url) => ({ type: "image_url", image_url: { url } })),
        ],
      });
    } else {
      out.push({ role: m.role, content: m.content || "" });
    }
  }
  const body = { model, stream: true, messages: out };
  if (temperature != null) body.temperature = temperature;
  if (maxTokens) body.max_tokens = maxTokens;
  return body;
}

/**
 * One parsed SSE event (`{event, data}`) → `{content, reasoning, error, done}` deltas.
 * Unknown events give empty deltas; `[DONE]` gives done.
 */
export function chatDelta(endpoint, ev) {
  const out = { content: "", reasoning: "", error: "", done: false };
  if (!ev || ev.data == null) return out;
  if (ev.data.trim() === "[DONE]") {
    out.done = true;
    return out;
  }
  let obj;
  try {
    obj = JSON.parse(ev.data);
  } catch {
    return out;
  }
  if (obj?.error) {
    out.error = typeof obj.error === "string" ? obj.error : obj.error.message || JSON.stringify(obj.error);
    return out;
  }
  if (endpoint === "messages") {
    if (obj.type === "content_block_delta") {
      if (obj.delta?.type === "text_delta") out.content = obj.delta.text || "";
      else if (obj.delta?.type === "thinking_delta") out.reasoning = obj.delta.thinking || "";
    } else if (obj.type === "message_stop") out.done = true;
    return out;
  }
  if (endpoint === "responses") {
    const t = obj.type || ev.event;
    if (t === "response.output_text.delta") out.content = obj.delta || "";
    else if (t === "response.reasoning_text.delta" || t === "response.reasoning_summary_text.delta") {
      out.reasoning = obj.delta || "";
    } else if (t === "response.completed") out.done = true;
    return out;
  }
  const delta = obj.choices?.[0]?.delta || {};
  out.content = delta.content || "";
  out.reasoning = delta.reasoning_content || delta.reasoning || "";
  return out;
}

/**
 * Separate the proxy's loading-status block (sent inside reasoning between two lines of
 * "━━━━━") from the model's own reasoning. Returns `{loading, reasoning, loadingDone}`.
 */
export function splitLoadingState(text) {
  if (!text || !text.startsWith(RULE)) return { loading: "", reasoning: text || "", loadingDone: true };
  const close = text.indexOf(RULE, RULE.length);
  if (close < 0) return { loading: text, reasoning: "", loadingDone: false };
  let end = close + RULE.length;
  // The block ends with the rule line and one " \n" spacer line.
  const rest = text.slice(end);
  const m = /^\n? ?\n?/.exec(rest);
  end += m ? m[0].length : 0;
  return { loading: text.slice(0, end), reasoning: text.slice(end), loadingDone: true };
}

/** The "Queue position: #N" most recently reported inside a loading block, or null. */
export function lastQueuePosition(loadingText) {
  const all = [...String(loadingText).matchAll(/Queue position: #(\d+)/g)];
  return all.length ? Number(all[all.length - 1][1]) : null;
}
