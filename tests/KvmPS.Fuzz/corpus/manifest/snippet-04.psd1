# comment
<# block #>
@{ x = ,1 }