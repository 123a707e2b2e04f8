// The Options panel's sampling settings: the TGI parameters they mean, kept per conversation
// in the browser (the server keeps a conversation's model and system prompt).

const STORED = "h2o-chat.parameters."; // localStorage key + conversation id

export class Options {
  constructor(temperature, maxNewTokens) {
    this.temperature = temperature;
    this.maxNewTokens = maxNewTokens;
  }

  // The TGI parameters of a turn, as chat-ui's defaults with these settings.
  parameters() {
    const temperature = Number(this.temperature.value);
    const maxNewTokens = Number.parseInt(this.maxNewTokens.value, 10);
    const params = {
      max_new_tokens: Number.isInteger(maxNewTokens) && maxNewTokens > 0 ? maxNewTokens : 1024,
      truncate: 2048,
      repetition_penalty: 1.2,
      return_full_text: false,
      details: true,
    };
    if (temperature > 0) {
      params.do_sample = true;
      params.temperature = temperature;
    } else {
      params.do_sample = false;
    }
    return params;
  }

  // "greedy (temperature 0) · up to 256 new tokens"
  describe() {
    const params = this.parameters();
    const sampling = params.do_sample ? `temperature ${params.temperature}` : "greedy (temperature 0)";
    return `${sampling} \u00b7 up to ${params.max_new_tokens} new tokens`;
  }

  save(id) {
    const values = { temperature: this.temperature.value, maxNewTokens: this.maxNewTokens.value };
    localStorage.setItem(STORED + id, JSON.stringify(values));
  }

  // Puts back the settings kept for conversation `id`, if any.
  restore(id) {
    try {
      const values = JSON.parse(localStorage.getItem(STORED + id) || "null");
      if (values) {
        this.temperature.value = values.temperature;
        this.maxNewTokens.value = values.maxNewTokens;
      }
    } catch {
      this.forget(id);
    }
  }

  forget(id) {
    localStorage.removeItem(STORED + id);
  }
}
