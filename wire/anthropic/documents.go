package anthropic

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/jsonobj"
)

// Documents (PDF, plain text, custom content) and search results are
// served by Anthropic backends alone: passed through to them as written,
// measured here for admission as the text they carry, a PDF's pages at
// PDFPageTokens each beside its bytes.

// PDFPageTokens is what one PDF page is held at beside its bytes:
// Anthropic bills a page as an image of it and its text, 1,500 to 3,000
// tokens.
const PDFPageTokens = 3000

// anthropicOnly are the block types only an Anthropic backend takes.
var anthropicOnly = map[string]bool{"document": true, "search_result": true}

// pdfPage matches a PDF's page objects (not the /Pages tree's).
var pdfPage = regexp.MustCompile(`/Type\s*/Page[^s]`)

// documentPart is a document or search result block as the text
// admission measures, and the tokens of its pages; the first such block
// marks the request as one only Anthropic backends take.
func (ar *Request) documentPart(where string, b *block) (chatPart, error) {
	if ar.OnlyAnthropic == nil {
		ar.OnlyAnthropic = apierr.BadRequest(where+".type", fmt.Sprintf(
			"%s blocks are served only by Anthropic backends: this model has none, or none that can take the request now", b.Type))
	}
	text := ""
	if b.Type == "search_result" {
		text = string(b.Content) // its text blocks, as written
	} else {
		var src source
		if !present(b.Source) || json.Unmarshal(b.Source, &src) != nil {
			return chatPart{}, apierr.BadRequest(where+".source", "a document needs a source")
		}
		if err := jsonobj.ExactNames(where+".source", b.Source, &src); err != nil {
			return chatPart{}, err
		}
		switch src.Type {
		case "base64":
			text = src.Data
			pdf, err := base64.StdEncoding.DecodeString(src.Data)
			if err != nil {
				return chatPart{}, apierr.BadRequest(where+".source.data", "a base64 document's data is not base64")
			}
			ar.Extra += PDFPageTokens * max(1, len(pdfPage.FindAllIndex(pdf, -1)))
		case "text":
			text = src.Data
		case "content", "url", "file":
			text = string(b.Source)
			ar.Extra += PDFPageTokens // a page at least, of what obol cannot see
		default:
			return chatPart{}, apierr.BadRequest(where+".source.type", "a document's source is base64, text, content, url or file")
		}
	}
	return chatPart{Type: "text", Text: &text}, nil
}
