package openai

import "github.com/obol/obol/internal/jsonobj"

// One meaning per field: a member whose name is not exactly a field of
// the API but folds to one is refused. Go's encoding/json matches names
// to fields regardless of case (Unicode simple folding: "max_tokenſ" is
// max_tokens, "meſſages" is messages), so a Go backend reads such a
// member as the field while obol, and a backend that matches exactly,
// read the field itself: {"max_tokens":5,"max_tokenſ":30000} would be
// reserved as 5 tokens and generated as 30000.

// The members of each object obol reads, as OpenAI's API reference names
// them.
var (
	chatFields = jsonobj.NewNames("messages", "model", "audio", "frequency_penalty", "function_call", "functions",
		"logit_bias", "logprobs", "max_completion_tokens", "max_tokens", "metadata", "modalities", "n",
		"parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key", "prompt_cache_retention",
		"reasoning_effort", "response_format", "safety_identifier", "seed", "service_tier", "stop", "store",
		"stream", "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user",
		"verbosity", "web_search_options")
	completionFields = jsonobj.NewNames("model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias",
		"logprobs", "max_tokens", "n", "presence_penalty", "seed", "stop", "stream", "stream_options", "suffix",
		"temperature", "top_p", "user")
	embeddingFields = jsonobj.NewNames("model", "input", "dimensions", "encoding_format", "user")
	responsesFields = jsonobj.NewNames("model", "input", "instructions", "max_output_tokens", "temperature", "top_p",
		"tools", "tool_choice", "parallel_tool_calls", "text", "stream", "store", "previous_response_id",
		"conversation", "user", "metadata", "background", "include", "max_tool_calls", "prompt",
		"prompt_cache_key", "reasoning", "safety_identifier", "service_tier", "stream_options", "top_logprobs",
		"truncation")
	messageFields       = jsonobj.NewNames("role", "content", "name", "tool_calls", "tool_call_id", "function_call", "refusal", "audio")
	partFields          = jsonobj.NewNames("type", "text", "image_url", "input_audio", "file", "refusal")
	streamOptionsFields = jsonobj.NewNames("include_usage", "include_obfuscation")
)
