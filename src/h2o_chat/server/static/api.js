// The server's routes as the page uses them: chat-ui's 2023 protocol, JSON in and out, and
// the TGI event stream of an answer.

async function errorText(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    return body.error || body.message || text;
  } catch {
    return text || response.statusText;
  }
}

// The response of a JSON request; an Error naming the route and the server's message if not ok.
export async function request(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    throw new Error(`${method} ${path}: ${response.status} ${await errorText(response)}`);
  }
  return response;
}

export async function requestJson(method, path, body) {
  return (await request(method, path, body)).json();
}

// The welcome settings, posted as chat-ui's form action (the browser sends the Referer).
export async function postSettings(model) {
  const form = new URLSearchParams({
    ethicsModalAccepted: "true",
    shareConversationsWithModelAuthors: "false",
    activeModel: model,
  });
  const response = await fetch("/settings", { method: "POST", body: form });
  if (!response.ok) {
    throw new Error(`settings: ${response.status} ${await errorText(response)}`);
  }
}

// Calls onEvent with each parsed `data:` event of a server-sent-event body.
async function readEvents(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let data = [];
  const flushLine = (line) => {
    if (line.endsWith("\r")) line = line.slice(0, -1);
    if (line.startsWith("data:")) {
      data.push(line.slice(5));
    } else if (line === "" && data.length) {
      const event = JSON.parse(data.join("\n"));
      data = [];
      onEvent(event);
    }
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    const lines = buffer.split("\n");
    buffer = lines.pop();
    lines.forEach(flushLine);
  }
  buffer += decoder.decode();
  if (buffer) flushLine(buffer);
  flushLine("");
}

// POST /conversation/{id}: streams the answer to `inputs`, calling onEvent with each event.
// `messageId` names the question; with `isRetry` the server replaces that stored question
// and everything after it (chat-ui's retry).
export async function streamAnswer({ conversationId, inputs, parameters, messageId, isRetry,
  signal, onEvent }) {
  const response = await fetch(`/conversation/${conversationId}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify({
      inputs,
      parameters,
      stream: true,
      options: {
        id: messageId,
        response_id: crypto.randomUUID(),
        is_retry: isRetry,
        use_cache: false,
        web_search_id: "",
      },
    }),
    signal,
  });
  if (!response.ok) {
    throw new Error(`${response.status} ${await errorText(response)}`);
  }
  await readEvents(response.body, onEvent);
}
