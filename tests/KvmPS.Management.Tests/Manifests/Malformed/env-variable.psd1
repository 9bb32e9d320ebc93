# expect: 4:17: Operator '+' is not allowed
@{
    Name = 'web1'
    Notes = "x" + $env:HOME
}
