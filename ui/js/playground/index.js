// The Playground: always mounted (hidden when another page is shown) so a running chat keeps
// streaming and keeps its state across navigation.

import { html } from "../../vendor/htm-preact-standalone.mjs";
import { Tabs, usePersisted } from "../ui/common.js";
import { ChatTab } from "./chat.js";
import { LoadTestTab } from "./loadtest.js";
import { ImagesTab, RerankTab, SpeechTab, TranscriptionTab } from "./media.js";

export const PLAYGROUND_TABS = [
  { id: "chat", label: "Chat", C: ChatTab },
  { id: "images", label: "Images", C: ImagesTab },
  { id: "speech", label: "Speech", C: SpeechTab },
  { id: "transcription", label: "Transcription", C: TranscriptionTab },
  { id: "rerank", label: "Rerank", C: RerankTab },
  { id: "loadtest", label: "Load Test", C: LoadTestTab },
];

export function usePlaygroundTab() {
  return usePersisted("playground-selected-tab", "chat");
}

export function Playground({ visible, tab, setTab }) {
  return html`<div class="page playground" hidden=${!visible} aria-hidden=${visible ? "false" : "true"}>
    <${Tabs} label="Playground tools" tabs=${PLAYGROUND_TABS} value=${tab} onChange=${setTab} />
    ${PLAYGROUND_TABS.map(
      (t) => html`<div role="tabpanel" aria-labelledby=${`tab-${t.id}`} hidden=${t.id !== tab} class="tabpanel">
        <${t.C} />
      </div>`,
    )}
  </div>`;
}
