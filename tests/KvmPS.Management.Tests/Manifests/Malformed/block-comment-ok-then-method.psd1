# expect: 5:40: Member access and method calls are not allowed
<# A block comment
   spanning lines #>
@{
    Name = 'web1' <# inline #>; X = 'a'.Trim()
}
