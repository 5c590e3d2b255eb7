package anthropic

import "time"

// ModelInfo is a model in Anthropic's list shape.
type ModelInfo struct {
	Type        string `json:"type"`
	ID          string `json:"id"`
	DisplayName string `json:"display_name"`
	CreatedAt   string `json:"created_at"`
}

// Model is the model id, named for people as name, created at created.
func Model(id, name string, created time.Time) ModelInfo {
	if name == "" {
		name = id
	}
	return ModelInfo{Type: "model", ID: id, DisplayName: name, CreatedAt: created.UTC().Format(time.RFC3339)}
}

// ModelList is a page of models: here always the whole list.
type ModelList struct {
	Data    []ModelInfo `json:"data"`
	HasMore bool        `json:"has_more"`
	FirstID *string     `json:"first_id"`
	LastID  *string     `json:"last_id"`
}

// Models is the list of ms, one page.
func Models(ms []ModelInfo) ModelList {
	l := ModelList{Data: ms}
	if l.Data == nil {
		l.Data = []ModelInfo{}
	}
	if len(ms) > 0 {
		l.FirstID, l.LastID = &ms[0].ID, &ms[len(ms)-1].ID
	}
	return l
}
