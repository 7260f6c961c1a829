package app

import (
	"errors"
	"log/slog"

	"github.com/gofiber/fiber/v2"
)

type pmtilesInfo struct {
	url      string
	maxZoom  int
	tileType string
}

func pmtilesHandler(path string, log *slog.Logger) (fiber.Handler, pmtilesInfo, error) {
	return nil, pmtilesInfo{}, errors.New("PMTiles basemaps are not supported yet")
}
