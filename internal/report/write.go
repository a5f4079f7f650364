package report

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

// Files are the paths WriteAll produced.
type Files struct{ JSON, Markdown, JUnit, HTML string }

// WriteAll writes matrix.json, matrix.md, matrix.xml and matrix.html into dir.
func WriteAll(dir string, m *matrix.Matrix) (Files, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Files{}, fmt.Errorf("create %s: %w", dir, err)
	}
	f := Files{
		JSON:     filepath.Join(dir, "matrix.json"),
		Markdown: filepath.Join(dir, "matrix.md"),
		JUnit:    filepath.Join(dir, "matrix.xml"),
		HTML:     filepath.Join(dir, "matrix.html"),
	}
	m.Sort()
	if err := m.WriteJSON(f.JSON); err != nil {
		return f, err
	}
	if err := Render(m, f.Markdown, f.JUnit, f.HTML); err != nil {
		return f, err
	}
	return f, nil
}

// Render writes the Markdown, JUnit and HTML forms of m (an empty path skips
// one). The HTML page links artifacts folders relative to where it is written.
func Render(m *matrix.Matrix, mdPath, junitPath, htmlPath string) error {
	write := func(path string, fn func(*os.File) error) error {
		if path == "" {
			return nil
		}
		fh, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("create %s: %w", path, err)
		}
		if err := fn(fh); err != nil {
			fh.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
		return fh.Close()
	}
	if err := write(mdPath, func(f *os.File) error { return Markdown(f, m) }); err != nil {
		return err
	}
	if err := write(junitPath, func(f *os.File) error { return JUnit(f, m) }); err != nil {
		return err
	}
	return write(htmlPath, func(f *os.File) error { return writeHTML(f, m, filepath.Dir(htmlPath)) })
}
