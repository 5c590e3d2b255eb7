// Package openai is OpenAI's wire formats and obol's native shape, as
// pure translation: it decodes and checks requests (chat, Responses,
// legacy completions, embeddings) and measures what they can cost, writes
// the body sent upstream, encodes answers, and turns a backend's Chat
// Completions events into a client's stream (native events, OpenAI's
// chunks, or the Responses API's events) through a Sink. It knows no
// server, handler, limiter or store: the gateway drives it.
package openai
