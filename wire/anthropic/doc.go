// Package anthropic is Anthropic's Messages API in front of Chat
// Completions backends: a Messages request translated to the Chat
// Completions request the backends are sent (request.go, content.go),
// and their answers and streams translated back (answer.go, stream.go),
// with Anthropic's errors, rate-limit headers and model list. Pure
// translation, as wire/openai is: no server, no handler, no store.
package anthropic
