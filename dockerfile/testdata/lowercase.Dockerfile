from alpine
run echo lower
cmd ["x"]
