module github.com/tawsil/tawsil/shared

go 1.26.8
