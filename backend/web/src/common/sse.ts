// The dispatcher event stream (GET /v1/stream, Server-Sent Events) read with
// fetch, since EventSource cannot send a bearer token. The server ends each
// stream after a minute; this reconnects at once then, and with a growing
// pause (1 s to 15 s) after a failure.
import { Api } from './api';

export type StreamState = 'connecting' | 'open' | 'reconnecting';
export interface StreamEvent { id: string; type: string; data: any }

export function openStream(api: Api, onEvent: (e: StreamEvent) => void, onState: (s: StreamState) => void): () => void {
  let stopped = false;
  let ctrl: AbortController | null = null;
  let pause = 1000;
  const run = async (): Promise<void> => {
    while (!stopped) {
      onState('connecting');
      ctrl = new AbortController();
      let ok = false;
      try {
        const res = await fetch('/v1/stream', { headers: api.headers({ Accept: 'text/event-stream' }), signal: ctrl.signal });
        if (res.status === 401) { await api.refresh(); throw new Error('unauthorized'); }
        if (!res.ok || !res.body) throw new Error('stream ' + res.status);
        onState('open');
        ok = true;
        pause = 1000;
        const reader = res.body.getReader();
        const dec = new TextDecoder();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let id = '', type = 'message', data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('id: ')) id = line.slice(4);
              else if (line.startsWith('event: ')) type = line.slice(7);
              else if (line.startsWith('data: ')) data += line.slice(6);
            }
            if (data) { try { onEvent({ id, type, data: JSON.parse(data) }); } catch { /* a malformed event is skipped */ } }
          }
        }
      } catch { /* reconnect below */ }
      if (stopped) return;
      onState('reconnecting');
      await new Promise(r => setTimeout(r, ok ? 200 : pause));
      if (!ok) pause = Math.min(pause * 2, 15000);
    }
  };
  void run();
  return () => { stopped = true; ctrl?.abort(); };
}
