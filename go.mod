module github.com/obol/obol

go 1.26.8

require (
	github.com/julienschmidt/httprouter v1.3.0
	github.com/sashabaranov/go-openai v1.43.0
	gopkg.in/yaml.v3 v3.0.1
)
