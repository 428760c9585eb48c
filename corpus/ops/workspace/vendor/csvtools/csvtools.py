def columns(line):
    return line.rstrip().split(",")
