package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Chart geometry, in pixels.
const (
	chartWidth  = 1000
	labelWidth  = 300 // the rows' labels, left of the plot
	plotRight   = chartWidth - 70
	barHeight   = 14
	barGap      = 4
	groupGap    = 14
	headerLines = 3
	lineHeight  = 16
)

var (
	colWhite = color.RGBA{255, 255, 255, 255}
	colText  = color.RGBA{30, 30, 30, 255}
	colGrid  = color.RGBA{220, 220, 220, 255}
	colOne   = color.RGBA{90, 90, 90, 255}
	colMark  = color.RGBA{200, 30, 30, 255}
	// One color per compared flavour, in the order of the report's columns.
	barColors = []color.RGBA{{50, 110, 190, 255}, {235, 140, 40, 255}}
)

// writeChart draws, for every charted row, one bar per compared flavour:
// how many times better berth is, on a log scale around 1×. A red tick marks
// the target where there is one.
func writeChart(path string, res *results) error {
	others := res.others()
	if len(others) > len(barColors) {
		others = others[:len(barColors)]
	}
	var rows []*row
	lo, hi := 0.5, 2.0
	for _, t := range res.allTables() {
		for _, r := range t.rows {
			if r.chart == "" {
				continue
			}
			has := false
			for _, o := range others {
				if v, ok := r.ratio(o.key); ok {
					has = true
					lo, hi = math.Min(lo, v), math.Max(hi, v)
				}
			}
			if has {
				rows = append(rows, r)
			}
		}
	}
	if len(rows) == 0 || len(others) == 0 {
		return fmt.Errorf("nothing to chart")
	}
	// The scale spans whole powers of ten.
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	top := headerLines*lineHeight + 10
	group := len(others)*(barHeight+barGap) + groupGap
	height := top + len(rows)*group + 2*lineHeight + 10
	img := image.NewRGBA(image.Rect(0, 0, chartWidth, height))
	draw.Draw(img, img.Bounds(), image.NewUniform(colWhite), image.Point{}, draw.Src)

	x := func(v float64) int {
		f := (math.Log10(v) - math.Log10(lo)) / (math.Log10(hi) - math.Log10(lo))
		return labelWidth + int(f*float64(plotRight-labelWidth))
	}
	bottom := top + len(rows)*group
	// Grid lines at 1, 2 and 5 times each power of ten; labels at the powers.
	for p := lo; p <= hi*1.001; p *= 10 {
		for _, m := range []float64{1, 2, 5} {
			v := p * m
			if v > hi*1.001 {
				break
			}
			c := colGrid
			if math.Abs(v-1) < 1e-9 {
				c = colOne
			}
			fillRect(img, x(v), top-4, 1, bottom-top+4, c)
			if m == 1 {
				drawText(img, x(v)-textWidth(ratioLabel(v))/2, bottom+lineHeight, ratioLabel(v), colText)
			}
		}
	}

	drawText(img, 10, lineHeight, "berth compared with CNCF Distribution: how many times better (log scale; right of 1x = berth better)", colText)
	lx := 10
	for i, o := range others {
		fillRect(img, lx, lineHeight+8, 12, 12, barColors[i])
		label := "berth vs " + o.label
		drawText(img, lx+16, 2*lineHeight+2, label, colText)
		lx += 16 + textWidth(label) + 24
	}
	fillRect(img, lx, lineHeight+6, 2, 16, colMark)
	drawText(img, lx+8, 2*lineHeight+2, "target of issue 5", colText)

	y := top
	for _, r := range rows {
		// basicfont has no "×".
		label := strings.ReplaceAll(r.chart, "×", "x")
		drawText(img, 10, y+barHeight+(len(others)-1)*(barHeight+barGap)/2-2, label, colText)
		for i, o := range others {
			v, ok := r.ratio(o.key)
			if ok {
				x0, x1 := x(1), x(v)
				if x1 < x0 {
					x0, x1 = x1, x0
				}
				fillRect(img, x0, y, max(x1-x0, 1), barHeight, barColors[i])
				drawText(img, max(x(v), x(1))+4, y+barHeight-2, ratioLabel(v), colText)
			}
			if i == 0 && r.target > 0 {
				fillRect(img, x(r.target)-1, y-2, 2, barHeight+4, colMark)
			}
			y += barHeight + barGap
		}
		y += groupGap
	}

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func ratioLabel(v float64) string {
	switch {
	case v >= 10 || v == math.Trunc(v):
		return fmt.Sprintf("%.0fx", v)
	case v >= 1:
		return fmt.Sprintf("%.1fx", v)
	default:
		return fmt.Sprintf("%.2fx", v)
	}
}

func fillRect(img *image.RGBA, x, y, w, h int, c color.RGBA) {
	draw.Draw(img, image.Rect(x, y, x+w, y+h), image.NewUniform(c), image.Point{}, draw.Src)
}

func drawText(img *image.RGBA, x, y int, s string, c color.RGBA) {
	d := &font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func textWidth(s string) int {
	return font.MeasureString(basicfont.Face7x13, s).Round()
}
